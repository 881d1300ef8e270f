"""The egress proxy: an HTTP proxy on a Unix socket that lets a sandbox's connections through
only to the hosts its allow-list names (`core/egress.py`).

`python -m autodev.blocks.sandbox.egress_proxy SOCKET RULES REFUSALS`; it runs until its stdin
closes (the orchestrator that started it is gone). `CONNECT host:port` (HTTPS, and any TCP a
client tunnels) and absolute-form requests (`GET http://host:port/path`, plain HTTP) are both
served; each request's host is checked, then its name is resolved by the system's resolver for
that connection alone (nothing is cached, so a name whose addresses change is followed). The
step asking is named by the proxy credentials autodev gives each command (`step:attempt`); a
refused connection is answered 403 and appended to REFUSALS as one JSON line.

Well-kept proxies were weighed first: tinyproxy and Squid listen only on TCP ports (the sandbox
reaches the host through a Unix socket alone), and proxy.py would need a plugin, against a plugin
API its authors call unstable, for the per-step rules and the record of refusals.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from autodev.blocks.sandbox.egress_relay import pipe
from autodev.core.egress import EgressRules, Refusal, allowed
from autodev.core.models import utcnow

HEAD_LIMIT = 65536  # a request head larger than this is refused
CONNECT_TIMEOUT_S = 30.0


class Request:
    """A client's request head: what it asks for, where to, and who asks."""

    def __init__(self, head: bytes):
        lines = head.decode("latin-1").split("\r\n")
        self.method, self.target, self.version = (lines[0].split(" ") + ["", ""])[:3]
        self.headers = [line for line in lines[1:] if line]
        self.step_id, self.attempt = _credentials(self.header("proxy-authorization"))
        if self.method == "CONNECT":
            host, _, port = self.target.rpartition(":")
            self.host, self.port, self.path = host.strip("[]"), int(port) if port.isdigit() else 443, ""
        else:
            parts = urlsplit(self.target)
            self.host = parts.hostname or ""
            self.port = parts.port or (443 if parts.scheme == "https" else 80)
            self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def header(self, name: str) -> str:
        found = [line.split(":", 1)[1].strip() for line in self.headers if line.lower().startswith(f"{name}:")]
        return found[0] if found else ""

    def forwarded(self) -> bytes:
        """The head as the origin server gets it: origin-form, no proxy headers, one request only
        (`Connection: close`: a next request on this connection could be for another host)."""
        kept = [h for h in self.headers if h.split(":", 1)[0].lower() not in ("proxy-authorization", "proxy-connection", "connection")]
        return "\r\n".join([f"{self.method} {self.path} {self.version}", *kept, "Connection: close", "", ""]).encode("latin-1")


def _credentials(value: str) -> tuple[str | None, int | None]:
    """`Basic base64(step:attempt)`, as autodev's proxy URL for a command gives it."""
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        user, _, password = base64.b64decode(encoded).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    return user or None, int(password) if password.isdigit() else None


class EgressProxy:
    def __init__(self, rules: EgressRules, refusals: Path):
        self.rules = rules
        self.refusals = refusals

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        request = Request(head[:-4])
        if not allowed(request.host, request.port, self.rules.for_step(request.step_id)):
            self._refused(request)
            return await _answer(writer, 403, f"autodev's allow-list refuses {request.host}:{request.port}")
        try:
            upstream_reader, upstream = await asyncio.wait_for(asyncio.open_connection(request.host, request.port), CONNECT_TIMEOUT_S)
        except (TimeoutError, OSError) as exc:
            return await _answer(writer, 502, f"cannot reach {request.host}:{request.port}: {exc}")
        if request.method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            upstream.write(request.forwarded())
        await asyncio.gather(pipe(reader, upstream), pipe(upstream_reader, writer))

    def _refused(self, request: Request) -> None:
        refusal = Refusal(step_id=request.step_id, attempt=request.attempt, host=request.host, port=request.port, ts=utcnow())
        with self.refusals.open("a") as out:
            out.write(refusal.model_dump_json() + "\n")


async def _answer(writer: asyncio.StreamWriter, status: int, text: str) -> None:
    reason = {403: "Forbidden", 502: "Bad Gateway"}[status]
    body = f"{text}\n".encode()
    writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    writer.close()


async def main(socket_path: str, rules_path: str, refusals_path: str) -> None:
    proxy = EgressProxy(EgressRules.model_validate_json(Path(rules_path).read_text()), Path(refusals_path))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    server = await asyncio.start_unix_server(proxy.serve, socket_path, limit=HEAD_LIMIT)
    os.chmod(socket_path, 0o666)  # the sandbox's relay runs as the sandbox's user
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the orchestrator is gone
    server.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
