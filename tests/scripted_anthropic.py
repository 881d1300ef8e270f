"""A scripted stand-in for the Anthropic Messages API, for running real Claude Code in tests.

Claude Code (`ANTHROPIC_BASE_URL=http://127.0.0.1:PORT`, no /v1) POSTs each model request to
`/v1/messages` with "stream": true and reads Server-Sent Events. This server answers request N
with turn N of the script (the last turn repeats once the script runs out):

    tool_use("Write", {"file_path": "/workspace/f", "content": "x"})   a tool call; Claude runs it, asks again
    tool_use("Bash", {"command": "echo hi > f"})
    text("done")           the final answer (stop_reason "end_turn"); `claude -p` prints its result
    silent()               200 + SSE headers, then nothing until the server stops
    silent(headers=False)  not even the headers: the request hangs until the server stops
    http_error(429)        an Anthropic-style JSON error with that status (401, 429, 500, 529...)

Side requests that are not the agent's own turn do not take a turn: a /v1/messages request that
offers no tools (a quota check, a title) gets a short text, /v1/messages/count_tokens a count,
anything else 404. All are recorded (`requests`), with the turn they got (`Request.turn`).

    with ScriptedAnthropic([tool_use("Write", {...}), text("done")]) as model:
        subprocess.run([... "-e", f"ANTHROPIC_BASE_URL={model.base_url}", ...])
    assert model.turn_requests[0].json()["messages"][0]["role"] == "user"

Stdlib only (plus the shared threading server of scripted_responses); stop() joins every thread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tests.scripted_responses import Request as _BaseRequest
from tests.scripted_responses import ScriptedResponses, _Handler

MODEL_USAGE = {"input_tokens": 100, "output_tokens": 10, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
               413: "request_too_large", 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}  # fmt: skip


@dataclass(frozen=True)
class Turn:
    kind: str  # "tool_use" | "text" | "silent" | "http_error"
    name: str = ""  # the tool, for "tool_use"
    input: dict | None = None  # the tool's arguments
    text: str = ""  # the answer, for "text"
    status: int = 200  # for "http_error"
    headers: bool = True  # for "silent": send the 200 and SSE headers first


def tool_use(name: str, input: dict) -> Turn:
    return Turn("tool_use", name=name, input=dict(input))


def text(t: str) -> Turn:
    return Turn("text", text=t)


def silent(headers: bool = True) -> Turn:
    return Turn("silent", headers=headers)


def http_error(status: int) -> Turn:
    return Turn("http_error", status=status)


@dataclass
class Request(_BaseRequest):
    turn: int | None = None  # the script index this request was answered with; None: a side request


def message_blocks(turn: Turn, n: int) -> tuple[list[dict], str]:
    """The content blocks of a turn's reply and its stop_reason."""
    if turn.kind == "tool_use":
        return [{"type": "tool_use", "id": f"toolu_{n:04d}", "name": turn.name, "input": turn.input}], "tool_use"
    return [{"type": "text", "text": turn.text}], "end_turn"


def sse_events(blocks: list[dict], stop_reason: str, n: int, model: str) -> list[dict]:
    """A streamed reply, as api.anthropic.com sends one: each block opened, filled by deltas, closed."""
    start = {"id": f"msg_{n:04d}", "type": "message", "role": "assistant", "model": model, "content": [],
             "stop_reason": None, "stop_sequence": None, "usage": {**MODEL_USAGE, "output_tokens": 1}}  # fmt: skip
    events = [{"type": "message_start", "message": start}]
    for i, block in enumerate(blocks):
        if block["type"] == "tool_use":
            opened, delta = {**block, "input": {}}, {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        else:
            opened, delta = {"type": "text", "text": ""}, {"type": "text_delta", "text": block["text"]}
        events += [{"type": "content_block_start", "index": i, "content_block": opened},
                   {"type": "content_block_delta", "index": i, "delta": delta},
                   {"type": "content_block_stop", "index": i}]  # fmt: skip
    events.append({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                   "usage": {"output_tokens": MODEL_USAGE["output_tokens"]}})  # fmt: skip
    return events + [{"type": "message_stop"}]


class _AnthropicHandler(_Handler):
    """HTTP/1.1 with chunked SSE bodies; reuses the Responses server's request recording and chunking."""

    def do_HEAD(self):  # noqa: N802 (a connectivity probe, if one comes)
        self._record_turn(None)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):  # noqa: N802
        self._record_turn(None)
        self._error(404, "not found")

    def do_POST(self):  # noqa: N802
        path = self.path.split("?")[0].rstrip("/")
        owner: ScriptedAnthropic = self.server.owner
        if path.endswith("/v1/messages/count_tokens"):
            self._record_turn(None)
            return self._send_json(200, {"input_tokens": MODEL_USAGE["input_tokens"]})
        if not path.endswith("/v1/messages"):
            self._record_turn(None)
            return self._error(404, "not found")
        req = self._record_turn(None)
        body = req.json() if req.body_text else {}
        if body.get("tools"):  # the agent's own turn: take the next one from the script
            turn, n = owner._next_turn(req.body_text)
            req.turn = n
        else:  # a side request (quota check, title...): a short answer, no turn taken
            turn, n = text(owner.side_text), 9000 + len(owner.requests)
        if turn.kind == "http_error":
            return self._error(turn.status, f"scripted HTTP {turn.status}")
        model = body.get("model", "claude-scripted")
        blocks, stop_reason = message_blocks(turn, n)
        if turn.kind == "silent" and not (turn.headers and body.get("stream")):
            self.close_connection = True
            owner._stopping.wait()  # no status line at all, until stop()
            return
        if not body.get("stream"):  # a plain JSON reply, if asked for one
            return self._send_json(200, {"id": f"msg_{n:04d}", "type": "message", "role": "assistant", "model": model,
                                         "content": blocks, "stop_reason": stop_reason, "stop_sequence": None,
                                         "usage": MODEL_USAGE})  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if turn.kind == "silent":
            self.close_connection = True
            owner._stopping.wait()  # hold the stream open, sending nothing, until stop()
            return
        for event in sse_events(blocks, stop_reason, n, model):
            self._chunk(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
        self._chunk(b"")  # the chunked body's end

    def _record_turn(self, turn: int | None) -> Request:
        base = self._record()  # appended to owner.requests; swapped for the richer record
        req = Request(base.method, base.path, base.headers, base.body_text, turn)
        with self.server.owner._lock:
            self.server.owner.requests[self.server.owner.requests.index(base)] = req
        return req

    def _error(self, status: int, message: str):
        kind = ERROR_TYPES.get(status, "api_error")
        self._send_json(status, {"type": "error", "error": {"type": kind, "message": message}})


class ScriptedAnthropic(ScriptedResponses):
    """The server, on 127.0.0.1:0 (or a Unix socket, `unix_path`, like ScriptedResponses)."""

    handler = _AnthropicHandler

    def __init__(self, script: list[Turn], *, side_text: str = "ok", **kwargs):
        super().__init__(script, **kwargs)
        self.side_text = side_text  # the answer to side requests
        self.requests: list[Request] = []

    @property
    def base_url(self) -> str:  # ANTHROPIC_BASE_URL: the SDK appends /v1/messages itself
        return f"http://{self.host}:{self.port}"

    @property
    def turn_requests(self) -> list[Request]:
        """The requests that took a turn of the script, in order."""
        with self._lock:
            return [r for r in self.requests if r.turn is not None]
