"""A scripted stand-in for the OpenAI Chat Completions API, for running real aider in tests.

aider (litellm; `--model openai/gpt-4o-mini --openai-api-base {base_url}`) POSTs each model
request to `{base_url}/chat/completions`: a JSON answer when the body has no `"stream": true`
(aider's --no-stream), else Server-Sent Events (`data: {...}` chunks, then `data: [DONE]`).
Request N gets turn N of the script (the last turn repeats):

    reply(text)        the assistant's content; aider applies the edits in it (see whole_file)
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

from tests.scripted_routes import Routes

MODEL = "gpt-4o-mini"


@dataclass(frozen=True)
class Turn:
    kind: str  # "reply" | "silent" | "http_error"
    text: str = ""  # the content of a reply, the message of an error
    status: int = 200


def reply(text: str) -> Turn:
    return Turn("reply", text)


def silent() -> Turn:
    return Turn("silent")


def http_error(status: int, message: str = "scripted error") -> Turn:
    return Turn("http_error", message, status)


def whole_file(path: str, content: str) -> str:
    """A reply in aider's "whole" edit format (its default for gpt-4o-mini and unknown models):
    the file's path alone on a line, then the file's entire new content in a fence."""
    return f"{path}\n```\n{content.rstrip()}\n```\n"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body_text: str
    body: dict = field(default_factory=dict)  # the parsed JSON body ({} if none)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: a handler thread ends with its answer
    timeout = 30  # a client that connects and sends nothing does not hold its thread for long
    server: _Server

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._record("")
        self._send(200, "application/json", {"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    def do_POST(self) -> None:
        text = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode(errors="replace")
        body, turn = self._record(text), self.server.owner._next_turn(text)
        stream = body.get("stream") is True
        if turn.kind == "http_error":
            error = {"message": turn.text, "type": "invalid_request_error", "param": None, "code": str(turn.status)}
            return self._send(turn.status, "application/json", {"error": error})
        if turn.kind == "silent":  # headers, then nothing until stop()
            self._send(200, "text/event-stream" if stream else "application/json", None)
            self.server.owner._stopping.wait()
            return
        base = {"id": "chatcmpl-scripted", "created": int(time.time()), "model": body.get("model", MODEL)}
        # aider's "Tokens: N sent, M received." shows these when not streaming (streaming, it counts itself)
        usage = {"prompt_tokens": max(1, len(text) // 4), "completion_tokens": max(1, len(turn.text) // 4)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if not stream:
            choice = {"index": 0, "message": {"role": "assistant", "content": turn.text}, "finish_reason": "stop"}
            return self._send(200, "application/json", {**base, "object": "chat.completion", "choices": [choice], "usage": usage})
        chunks = [  # a role chunk, the content, a finish chunk carrying the usage
            ({"role": "assistant", "content": ""}, None, {}),
            ({"content": turn.text}, None, {}),
            ({}, "stop", {"usage": usage}),
        ]
        events = [
            {**base, "object": "chat.completion.chunk", **extra, "choices": [{"index": 0, "delta": d, "finish_reason": f}]}
            for d, f, extra in chunks
        ]
        sse = "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"
        self._send(200, "text/event-stream", sse.encode())

    def _record(self, text: str) -> dict:
        try:
            body = json.loads(text) if text else {}
        except ValueError:
            body = {}
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.owner.requests.append(Request(self.command, self.path, headers, text, body))
        return body

    def _send(self, status: int, content_type: str, payload: dict | bytes | None) -> None:
        """Status and headers, then the body (a dict as JSON; None: headers only, connection kept open)."""
        data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if data is not None:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data or b"")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # handler threads are kept in a list, and server_close() joins them
    block_on_close = True
    owner: ScriptedChat


class ScriptedChat:
    def __init__(self, script: list[Turn], routes: dict[str, list[Turn]] | None = None) -> None:
        if not script and not routes:
            raise ValueError("a script needs at least one turn")
        self.script, self.routes = list(script), Routes(routes)
        self.requests: list[Request] = []  # every request, in arrival order
        self._served = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:  # for --openai-api-base (or OPENAI_API_BASE)
        assert self._server, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def completions(self) -> list[Request]:  # the model requests alone (no GET /models)
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def _next_turn(self, body: str = "") -> Turn:
        with self._lock:
            self._served += 1
        return self.routes.next_turn(body) or self.script[min(self._served, len(self.script)) - 1]

    def start(self) -> ScriptedChat:
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="scripted-chat")
        self._thread.start()
        return self

    def stop(self) -> None:
        if not self._server or not self._thread:
            return
        self._stopping.set()  # silent turns return
        self._server.shutdown()  # serve_forever returns
        self._server.server_close()  # joins the handler threads
        self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> ScriptedChat:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
