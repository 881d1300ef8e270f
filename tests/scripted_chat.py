"""A scripted stand-in for the OpenAI Chat Completions API, for running real aider in tests.

aider (through litellm, model `openai/<name>` with `--openai-api-base {base_url}`) POSTs each
model request to `{base_url}/chat/completions`, as one JSON answer (`"stream": false`, which
`--no-stream` asks for) or as Server-Sent Events (`data: {...}` chunks, then `data: [DONE]`).
This server answers request N with turn N of the script (the last turn repeats):

    reply(text)        the assistant's message content (aider reads its edits out of it)
    silent()           200 + headers, then nothing until the server stops
    http_error(401)    an OpenAI-style JSON error with that status (401, 429, 500...)

    with ScriptedChat([reply(whole_file("hello.py", "print('hello')"))]) as model:
        subprocess.run(["aider", ..., "--openai-api-base", model.base_url, "--message", "make hello.py"],
                       env={..., "OPENAI_API_KEY": "sk-test"}, stdin=subprocess.DEVNULL)
    assert "make hello.py" in model.requests[0].body_text
    assert model.requests[0].headers["authorization"] == "Bearer sk-test"

GET {base_url}/models lists one model. Stdlib only; listens on 127.0.0.1 (a free port);
`stop()` releases silent turns and joins every thread the server started.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "gpt-4o-mini"


@dataclass(frozen=True)
class Turn:
    kind: str  # "reply" | "silent" | "http_error"
    text: str = ""
    status: int = 200


def reply(text: str) -> Turn:
    return Turn("reply", text)


def silent() -> Turn:
    return Turn("silent")


def http_error(status: int, message: str = "scripted error") -> Turn:
    return Turn("http_error", message, status)


def whole_file(path: str, content: str) -> str:
    """A reply in aider's "whole" edit format: the file's path on a line, then a fenced block."""
    return f"{path}\n```\n{content.rstrip()}\n```\n"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body_text: str
    body: dict = field(default_factory=dict)  # the JSON body, {} if none


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: handler threads end with their answer
    timeout = 30  # a client that connects and sends nothing does not hold a thread forever
    server: _Server

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._record("")
        self._json(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "scripted"}]})

    def do_POST(self) -> None:
        text = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode(errors="replace")
        body = self._record(text)
        turn = self.server.owner._next_turn()
        if turn.kind == "http_error":
            error = {"message": turn.text, "type": "invalid_request_error", "param": None, "code": str(turn.status)}
            return self._json(turn.status, {"error": error})
        stream = bool(body.get("stream"))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream" if stream else "application/json")
        if turn.kind == "silent":  # headers, then nothing until stop()
            self.end_headers()
            self.wfile.flush()
            self.server.owner._stopping.wait()
            return
        base = {"id": "chatcmpl-scripted", "created": int(time.time()), "model": body.get("model", MODEL)}
        usage = {"prompt_tokens": max(1, len(text) // 4), "completion_tokens": max(1, len(turn.text) // 4)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if not stream:
            message = {"role": "assistant", "content": turn.text}
            payload = {**base, "object": "chat.completion", "usage": usage,
                       "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
            data = json.dumps(payload).encode()
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.end_headers()  # SSE: a role chunk, the content, a finish chunk with usage, [DONE]
        chunk = {**base, "object": "chat.completion.chunk"}
        for delta, finish, extra in (({"role": "assistant", "content": ""}, None, {}),
                                     ({"content": turn.text}, None, {}), ({}, "stop", {"usage": usage})):
            event = {**chunk, **extra, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")

    def _record(self, text: str) -> dict:
        try:
            body = json.loads(text) if text else {}
        except ValueError:
            body = {}
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.owner.requests.append(Request(self.command, self.path, headers, text, body))
        return body

    def _json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # non-daemon handler threads are kept, and server_close() joins them
    block_on_close = True
    owner: ScriptedChat


class ScriptedChat:
    def __init__(self, script: list[Turn]) -> None:
        if not script:
            raise ValueError("a script needs at least one turn")
        self.script = list(script)
        self.requests: list[Request] = []  # every request, in arrival order
        self._count = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server, "not started"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:  # what --openai-api-base (or OPENAI_API_BASE) takes
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def completions(self) -> list[Request]:  # the model requests only (no GET /models)
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def _next_turn(self) -> Turn:
        with self._lock:
            self._count += 1
            return self.script[min(self._count, len(self.script)) - 1]

    def start(self) -> ScriptedChat:
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="scripted-chat", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if not self._server:
            return
        self._stopping.set()  # releases silent turns
        self._server.shutdown()  # ends serve_forever
        self._server.server_close()  # joins the handler threads
        assert self._thread
        self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> ScriptedChat:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
