"""The allow-list's relay, run in a container in the sandbox's network namespace (only the
standard library: it runs on the image's python3): `python3 egress_relay.py PORT SOCKET` listens
on 127.0.0.1:PORT and passes each connection to the egress proxy's Unix socket. When the proxy is
gone it answers 502, saying so: nothing gets out."""

import asyncio
import contextlib
import sys

GONE = b"autodev's egress proxy is not running: the sandbox has no network\n"
GONE_HEAD = b"HTTP/1.1 502 autodev egress proxy not running (no network)\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"


async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy until the source ends (then half-close the sink, so an answer can still come back)
    or either side fails."""
    with contextlib.suppress(ConnectionError, OSError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()


async def splice(a: asyncio.StreamReader, a_out: asyncio.StreamWriter, b: asyncio.StreamReader, b_out: asyncio.StreamWriter) -> None:
    """Both ways between two connections until both have ended; then close them."""
    try:
        await asyncio.gather(pipe(a, b_out), pipe(b, a_out))
    finally:
        for writer in (a_out, b_out):
            with contextlib.suppress(OSError):
                writer.close()


async def relay(socket_path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        upstream_reader, upstream = await asyncio.open_unix_connection(socket_path)
    except OSError:
        writer.write(GONE_HEAD % len(GONE) + GONE)
        writer.close()
        return
    await splice(reader, writer, upstream_reader, upstream)


async def main(port: int, socket_path: str) -> None:
    server = await asyncio.start_server(lambda r, w: relay(socket_path, r, w), "127.0.0.1", port)
    print("listening", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
