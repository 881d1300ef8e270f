"""A scripted stand-in for the OpenAI Responses API, for running real Codex CLI in tests.

Codex (`codex exec`, provider `wire_api = "responses"`) POSTs each model request to
`{base_url}/responses` and reads the reply as Server-Sent Events. This server answers
request N with turn N of the script (the last turn repeats once the script runs out):

    shell("echo hi > f")   the model calls Codex's shell tool; Codex runs it and asks again
    message("done")        the model's final answer; the turn ends (`turn.completed`)
    silent()               200 + SSE headers, then nothing until the server stops
    disconnect()           `response.created`, then the connection drops mid-body
    http_error(401)        an OpenAI-style JSON error with that status (401, 429, 500...)
    usage_limit(20)        429 with Retry-After: 20 and the usage limit's reset time in the body
    replace(turn, delay_s=20)   any of them after 20 s of the model "thinking"

    with ScriptedResponses([shell("echo hello > hello.txt"), message("done")]) as model:
        subprocess.run([CODEX, "exec", "--json", ..., *codex_config_args(model.base_url), "make hello.txt"],
                       env={..., "SCRIPTED_API_KEY": "test-key"}, stdin=subprocess.DEVNULL)
    assert "make hello.txt" in model.requests[0].body_text
    assert model.requests[0].headers["authorization"] == "Bearer test-key"

`ScriptedResponses(script, unix_path=...)` serves HTTP on a Unix socket instead; a container
without network reaches it through `RELAY_SCRIPT`. Stdlib only; `stop()` (also run at exit)
cuts open connections and joins every thread the server started.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import socketserver
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from tests.scripted_routes import Routes


@dataclass(frozen=True)
class Turn:
    kind: str  # "shell" | "message" | "silent" | "disconnect" | "http_error"
    text: str = ""  # the command for "shell", the answer for "message"
    status: int = 200  # for "http_error"
    delay_s: float = 0  # how long the model "thinks" before it answers (nothing is sent meanwhile)
    retry_after_s: int = 0  # for "usage_limit": when the limit resets


def shell(command: str) -> Turn:
    return Turn("shell", command)


def message(text: str) -> Turn:
    return Turn("message", text)


def silent() -> Turn:
    return Turn("silent")


def disconnect() -> Turn:
    return Turn("disconnect")


def http_error(status: int) -> Turn:
    return Turn("http_error", status=status)


def usage_limit(retry_after_s: int) -> Turn:
    """429 as the ChatGPT backend sends it when a plan's usage limit is reached: `Retry-After`,
    and the reset time (epoch seconds) in the body."""
    return Turn("usage_limit", status=429, retry_after_s=retry_after_s)


ERROR_BODIES = {  # as api.openai.com sends them; Codex shows error.message
    401: {"message": "Incorrect API key provided.", "type": "invalid_request_error", "code": "invalid_api_key"},
    429: {"message": "Rate limit reached. Please try again in 1s.", "type": "requests", "code": "rate_limit_exceeded"},
}
USAGE = {"input_tokens": 100, "output_tokens": 10, "total_tokens": 110}  # per request; Codex sums them


@dataclass
class Request:
    """One HTTP request as received. Header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body_text: str

    def json(self) -> dict:
        return json.loads(self.body_text)


def shell_call_item(call_id: str, command: str, tools: list[dict]) -> dict:
    """A function_call for the shell tool this Codex offered (0.171 offers `exec_command`)."""
    names = {t.get("name") for t in tools}
    if "exec_command" in names:
        name, args = "exec_command", {"cmd": command}
    elif "shell_command" in names:
        name, args = "shell_command", {"command": command}
    else:  # the older "shell" tool takes an argv list
        name, args = "shell", {"command": ["bash", "-lc", command]}
    return {"type": "function_call", "id": f"fc_{call_id}", "call_id": call_id, "name": name, "arguments": json.dumps(args)}


def sse(event: dict) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, chunked SSE bodies (so a cut body is an error, not an end)

    def log_message(self, *args):  # quiet; client_address is "" on a Unix socket anyway
        pass

    def do_GET(self):
        self._record()
        self._send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    def do_POST(self):
        req = self._record()
        if not req.path.rstrip("/").endswith("/responses"):
            return self._send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
        owner: ScriptedResponses = self.server.owner
        turn, n = owner._next_turn(req.body_text)
        if turn.delay_s:
            owner._stopping.wait(turn.delay_s)
        if turn.kind in ("usage_limit", "http_error"):
            return self._refuse(turn, owner)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.close_connection = turn.kind in ("silent", "disconnect")
        if turn.kind == "silent":
            owner._stopping.wait()  # hold the stream open, sending nothing, until stop()
            return
        self._chunk(sse({"type": "response.created", "response": {"id": f"resp_{n}"}}))
        if turn.kind == "disconnect":
            self.connection.shutdown(socket.SHUT_RDWR)  # no terminating chunk: the body is cut short
            return
        if turn.kind == "shell":
            item = shell_call_item(f"call_{n}", turn.text, (req.json() if req.body_text else {}).get("tools", []))
        else:
            item = {
                "type": "message",
                "role": "assistant",
                "id": f"msg_{n}",
                "content": [{"type": "output_text", "text": turn.text}],
            }
            self._chunk(sse({"type": "response.output_item.added", "item": item}))
            self._chunk(sse({"type": "response.output_text.delta", "delta": turn.text}))
        self._chunk(sse({"type": "response.output_item.done", "item": item}))
        self._chunk(sse({"type": "response.completed", "response": {"id": f"resp_{n}", "usage": USAGE}}))
        self._chunk(b"")  # the chunked body's end

    def _refuse(self, turn: Turn, owner: ScriptedResponses) -> None:
        if turn.kind == "http_error":
            return self._send_json(turn.status, {"error": ERROR_BODIES.get(turn.status, {"message": f"HTTP {turn.status}", "type": "server_error"})})
        resets_at = int(time.time()) + turn.retry_after_s
        owner.limit_resets.append(resets_at)
        body = {"type": "usage_limit_reached", "message": "The usage limit has been reached", "plan_type": "plus", "resets_at": resets_at}
        return self._send_json(429, {"error": body}, {"Retry-After": str(turn.retry_after_s)})

    def _record(self) -> Request:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        req = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        with self.server.owner._lock:
            self.server.owner.requests.append(req)
        return req

    def _chunk(self, data: bytes):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _send_json(self, status: int, payload: dict, headers: dict[str, str] | None = None):
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Tracking(socketserver.ThreadingMixIn):
    """One daemon thread per connection, remembered (with its socket) so stop() can cut and join it.

    (ThreadingMixIn's own block_on_close does not join daemon threads; non-daemon ones would
    hold the interpreter's exit before atexit runs stop().)
    """

    def process_request(self, request, client_address):
        thread = threading.Thread(target=self.process_request_thread, args=(request, client_address), daemon=True)
        with self.owner._lock:
            self.owner._conns.add(request)
            self.owner._threads.append(thread)
        thread.start()

    def shutdown_request(self, request):
        with self.owner._lock:
            self.owner._conns.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):  # Codex hanging up on us is expected
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _TCPServer(_Tracking, socketserver.TCPServer):
    allow_reuse_address = True


class _UnixServer(_Tracking, socketserver.UnixStreamServer):
    pass


class ScriptedResponses:
    """The server: TCP on host:0 by default, or HTTP over the Unix socket `unix_path`."""

    handler: type[BaseHTTPRequestHandler] = _Handler  # a subclass serves another API

    def __init__(
        self, script: list[Turn], *, unix_path: str | None = None, host: str = "127.0.0.1", routes: dict[str, list[Turn]] | None = None,
    ):  # fmt: skip
        if not script and not routes:
            raise ValueError("the script needs at least one turn")
        self.script, self.unix_path, self.host, self.routes = list(script), unix_path, host, Routes(routes)
        self.requests: list[Request] = []  # every request, in arrival order
        self.limit_resets: list[int] = []  # when each usage limit it answered with resets (epoch seconds)
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._served = 0
        self._server = self._thread = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:  # for TCP; over a Unix socket the URL is the relay's
        return f"http://{self.host}:{self.port}/v1"

    def _next_turn(self, body: str = "") -> tuple[Turn, int]:
        with self._lock:
            n, self._served = self._served, self._served + 1
        return self.routes.next_turn(body) or self.script[min(n, len(self.script) - 1)], n

    def start(self) -> ScriptedResponses:
        if self.unix_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix_path)
            self._server = _UnixServer(self.unix_path, self.handler, bind_and_activate=False)
        else:
            self._server = _TCPServer((self.host, 0), self.handler, bind_and_activate=False)
        self._server.owner = self
        self._server.server_bind()
        if self.unix_path:
            os.chmod(self.unix_path, 0o777)  # the container's user may not be ours
        self._server.server_activate()
        self._thread = threading.Thread(target=self._server.serve_forever, name=type(self).__name__, daemon=True)
        self._thread.start()
        atexit.register(self.stop)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()  # releases silent turns
        self._server.shutdown()  # ends serve_forever
        with self._lock:
            conns = list(self._conns)
        for conn in conns:  # wakes handlers waiting for the next keep-alive request
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        for thread in [self._thread, *self._threads]:
            thread.join()
        if self.unix_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix_path)
        self._server = None
        atexit.unregister(self.stop)

    def __enter__(self) -> ScriptedResponses:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def codex_config_args(
    base_url: str,
    *,
    env_key: str | None = "SCRIPTED_API_KEY",
    model: str = "gpt-5.5",
    idle_timeout_ms: int = 10_000,
    stream_retries: int = 0,
    request_retries: int = 0,
) -> list[str]:
    """`-c` flags pointing `codex exec` at base_url (Codex's defaults: 300000 ms, 5, 4).

    Codex sends `Authorization: Bearer $<env_key>` and fails before any request if that variable
    is unset or empty; with env_key=None it sends no Authorization header.
    """
    p = "model_providers.scripted"
    provider = {"name": '"scripted"', "base_url": f'"{base_url}"', "wire_api": '"responses"',
                "stream_idle_timeout_ms": idle_timeout_ms, "stream_max_retries": stream_retries,
                "request_max_retries": request_retries}  # fmt: skip
    args = ["-c", "model_provider=scripted", "-c", f"model={model}"]
    for key, value in provider.items():
        args += ["-c", f"{p}.{key}={value}"]
    return args + (["-c", f'{p}.env_key="{env_key}"'] if env_key else [])


# Runs inside a network-less container: `python3 -c "$RELAY_SCRIPT" PORT SOCKET_PATH &`.
# Accepts on 127.0.0.1:PORT and pipes each connection both ways to the Unix socket.
RELAY_SCRIPT = r"""
import socket, sys, threading
port, path = int(sys.argv[1]), sys.argv[2]
def pipe(src, dst):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try: s.shutdown(socket.SHUT_RDWR)
        except OSError: pass
def serve(client):
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try: upstream.connect(path)
    except OSError: client.close(); return
    threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
    pipe(client, upstream)
listener = socket.create_server(("127.0.0.1", port))
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""
