"""A local OpenAI-compatible server that answers from a file of stored responses.

It lets the Weather Bot experiment (and the other experiments) run offline with no API key:
litellm's real HTTP path talks to it exactly as to a provider. Each stored response says which
request it answers by the phrases the request's messages must contain (`when`); the most
specific match wins (the most phrases), so a retry that carries failure evidence can get a
different answer than the first attempt. A request nothing matches gets HTTP 404 with the
request's first line, which the caller sees as a model failure.

Cassette file (YAML):

    note: how these responses were made (shown in the server's log)
    responses:
      - when: ["Decompose", "weather"]
        content: '{"project": "weather-bot", "steps": [...]}'   # or `json:` with a mapping
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from autodev.core.errors import BadInput

REPLAY_MODEL = "openai/replay"  # the litellm model string for a replay server


class StoredResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    when: list[str] = Field(min_length=1, description="Phrases the request's messages must all contain.")
    content: str | None = None
    json_content: Any = Field(None, alias="json")

    @model_validator(mode="after")
    def _one_body(self) -> StoredResponse:
        if (self.content is None) == (self.json_content is None):
            raise ValueError("give exactly one of `content` and `json`")
        return self

    def text(self) -> str:
        return self.content if self.content is not None else json.dumps(self.json_content)


class Cassette(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = ""
    responses: list[StoredResponse] = Field(min_length=1)

    def answer(self, prompt: str) -> StoredResponse | None:
        matches = [r for r in self.responses if all(phrase in prompt for phrase in r.when)]
        return max(matches, key=lambda r: len(r.when), default=None)


def load_cassette(path: str | Path) -> Cassette:
    try:
        return Cassette.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
    except OSError as exc:
        raise BadInput(f"cannot read replay file {path}: {exc.strerror or exc}") from exc
    except (yaml.YAMLError, ValidationError) as exc:
        raise BadInput(f"replay file {path} is invalid: {exc}") from exc


def chat_completion(content: str, model: str, tokens: tuple[int, int]) -> dict[str, Any]:
    """An OpenAI chat.completion body."""
    prompt_tokens, completion_tokens = tokens
    return {
        "id": "chatcmpl-replay",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


class ModelServer:
    """An OpenAI-compatible /chat/completions endpoint on 127.0.0.1 (port 0: any free port),
    served from a background thread; `respond(request body)` gives (HTTP status, reply text)."""

    def __init__(self, respond: Callable[[dict[str, Any]], tuple[int, str]], port: int = 0):
        self.tokens_served: list[int] = []  # total_tokens of each answer
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                status, content = respond(request)
                prompt_chars = sum(len(str(m.get("content", ""))) for m in request.get("messages", []))
                # Token counts estimated at 4 characters a token, so usage and reports have figures.
                body = (
                    chat_completion(content, "replay", (prompt_chars // 4, len(content) // 4))
                    if status == 200
                    else {"error": {"message": content}}
                )
                if status == 200:
                    outer.tokens_served.append(int(body["usage"]["total_tokens"]))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.api_base = f"http://127.0.0.1:{self.server.server_port}/v1"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True, name="model-server").start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class ReplayServer(ModelServer):
    """Answers each request with the cassette's most specific matching response; 404 when none."""

    def __init__(self, cassette: Cassette, port: int = 0):
        self.cassette = cassette
        self.served: list[str] = []  # first line of each answered request, for logs and tests
        super().__init__(self._respond, port)

    def _respond(self, request: dict[str, Any]) -> tuple[int, str]:
        prompt = "\n".join(str(m.get("content", "")) for m in request.get("messages", []))
        first_line = next((ln for ln in prompt.splitlines() if ln.strip()), "")[:120]
        stored = self.cassette.answer(prompt)
        if stored is None:
            return 404, f"no stored response matches this request: {first_line}"
        self.served.append(first_line)
        return 200, stored.text()
