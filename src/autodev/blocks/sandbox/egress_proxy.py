"""The egress proxy: an HTTP proxy on a Unix socket that lets a sandbox's connections through
only to the hosts its allow-list names (`core/egress.py`).

`python -m autodev.blocks.sandbox.egress_proxy SOCKET RULES REFUSALS UID:GID`; it runs until its
stdin closes (the orchestrator that started it is gone), and only the sandbox's user (UID:GID)
may connect. `CONNECT host:port` (HTTPS, and any TCP a
client tunnels) and absolute-form requests (`GET http://host:port/path`, plain HTTP) are both
served; each request's host is checked, then its name is resolved by the system's resolver for
that connection alone (nothing is cached, so a name whose addresses change is followed), and the
connection goes to the address checked: a name that leads to this machine's loopback or a
link-local address is refused (only an entry naming the address reaches it). The
step asking is named by the proxy credentials autodev gives each command (`step:attempt`; a
request without them is asked for them, 407); a refused connection is answered 403 and appended
to REFUSALS as one JSON line. The credentials are what a client says: they attribute, they do not
authenticate (a process of the sandbox may claim another step's).

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
import shutil
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

from autodev.blocks.sandbox.egress_relay import splice
from autodev.core.egress import EgressRules, Refusal, allowed, private_to_this_machine
from autodev.core.models import utcnow

HEAD_LIMIT = 65536  # a request head larger than this is refused
CONNECT_TIMEOUT_S = 30.0
HEAD_TIMEOUT_S = 30.0  # a client that sends no request head in this long is let go


class Request:
    """A client's request head: what it asks for, where to, and who asks."""

    def __init__(self, head: bytes):
        lines = head.decode("latin-1").split("\r\n")
        self.method, self.target, self.version = (lines[0].split(" ") + ["", ""])[:3]
        self.headers = [line for line in lines[1:] if line]
        self.step_id, self.attempt = _credentials(self.header("proxy-authorization"))
        if self.method == "CONNECT":
            host, _, port = self.target.rpartition(":")
            self.host, self.port, self.path = host.strip("[]"), int(port) if port.isascii() and port.isdigit() else 443, ""
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
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
            request = Request(head[:-4])
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        except (ValueError, UnicodeError) as exc:  # a port out of range, a name IDNA refuses
            return await _answer(writer, 400, f"autodev's egress proxy cannot read the request: {exc}")
        if request.step_id is None:  # git, for one, sends the credentials only when asked for them
            return await _answer(writer, 407, "autodev's egress proxy needs the credentials HTTP_PROXY gives")
        address = await self._checked_address(request)
        if address is None:
            return await _answer(writer, 403, f"autodev's allow-list refuses {request.host}:{request.port}")
        try:
            upstream_reader, upstream = await asyncio.wait_for(asyncio.open_connection(address, request.port), CONNECT_TIMEOUT_S)
        except (TimeoutError, OSError) as exc:
            return await _answer(writer, 502, f"cannot reach {request.host}:{request.port}: {exc}")
        if request.method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            upstream.write(request.forwarded())
        await splice(reader, writer, upstream_reader, upstream)

    async def _checked_address(self, request: Request) -> str | None:
        """The address to connect to, resolved now for this connection alone; None (and the
        refusal recorded) when the list does not allow the host, or a name leads to this
        machine's own loopback or a link-local address (a cloud's metadata service)."""
        if allowed(request.host, request.port, self.rules.for_step(request.step_id)):
            try:
                found = await asyncio.get_running_loop().getaddrinfo(request.host, request.port, type=socket.SOCK_STREAM)
            except OSError:
                return request.host  # the connection says it cannot be resolved
            address = str(found[0][4][0])
            if address == request.host or not private_to_this_machine(address):
                return address
        refusal = Refusal(step_id=request.step_id, attempt=request.attempt, host=request.host, port=request.port, ts=utcnow())
        with self.refusals.open("a") as out:
            out.write(refusal.model_dump_json() + "\n")
        return None


async def _answer(writer: asyncio.StreamWriter, status: int, text: str) -> None:
    reason = {400: "Bad Request", 403: "Forbidden", 407: "Proxy Authentication Required", 502: "Bad Gateway"}[status]
    body = f"{text}\n".encode()
    ask = 'Proxy-Authenticate: Basic realm="autodev"\r\n' if status == 407 else ""
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\n{ask}Content-Type: text/plain\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    writer.close()


async def main(socket_path: str, rules_path: str, refusals_path: str, owner: str) -> None:
    """Serve until stdin closes; then remove the folder of the socket (the orchestrator that
    would have may be dead)."""
    proxy = EgressProxy(EgressRules.model_validate_json(Path(rules_path).read_text()), Path(refusals_path))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    server = await asyncio.start_unix_server(proxy.serve, socket_path, limit=HEAD_LIMIT)
    uid, gid = (int(n) for n in owner.split(":"))
    if os.geteuid() == 0:
        os.chown(socket_path, uid, gid)
    os.chmod(socket_path, 0o600)  # only the sandbox's user, whose relay connects
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the orchestrator is gone
    server.close()
    shutil.rmtree(Path(socket_path).parent, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
