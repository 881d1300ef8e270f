"""autodev's warm process: Prefect and the flow engine imported once, a fork for each command.

`python -m autodev.cli.warm.server SOCKET` (started by `registry.py`) imports what every command needs, listens
on SOCKET, and for each command received forks a copy of itself. The copy takes the command's
standard streams, directory, umask and environment, then runs the command line as the `autodev`
process would; its process ends the usual way (atexit handlers and all), and this process sends
its exit status to the waiting `autodev` process. The copy kills itself when that process
dies (`kill -9`), as a command running in it would have died.

The warm process holds no state of its own: stopping it (`autodev server stop`, SIGTERM) stops
it taking commands; the ones running go on and it reports them before it exits. It exits by
itself after AUTODEV_WARM_IDLE_S seconds (default 900) with no command, or when its socket file
is removed or replaced.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path

# Modules every command imports before its first step (imported here once, for every fork);
# not cli.*: its consoles look at the terminal when they are made, which each command has its own of.
# fastapi.encoders: Prefect serializes a flow run's parameters with it (about 0.1 s to import).
PRELOADED = (
    "docker", "yaml", "typer", "rich.console", "rich.table", "prefect.flow_engine", "prefect.task_engine",
    "prefect.client.orchestration", "prefect.flow_runs", "fastapi.encoders", "autodev.flows.plan_flow", "autodev.flows.develop",
    "autodev.flows.start", "autodev.blocks.store",
)  # fmt: skip
HANDSHAKE_TIMEOUT_S = 5


class Forked(Exception):
    """Raised in the forked copy, so it leaves the serving loop before it runs the command."""

    def __init__(self, conn: socket.socket, request: dict, fds: list[int]):
        self.conn, self.request, self.fds = conn, request, fds


def read_request(conn: socket.socket) -> tuple[dict, list[int]] | None:
    """A command's request and its standard streams' descriptors; None if it is not from this user."""
    _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    if uid != os.getuid():
        return None
    conn.settimeout(HANDSHAKE_TIMEOUT_S)
    data, fds, _flags, _address = socket.recv_fds(conn, 1 << 16, 3)
    (size,) = struct.unpack("!I", data[:4])
    data = data[4:]
    while len(data) < size:
        more = conn.recv(size - len(data))
        if not more:
            return None
        data += more
    conn.settimeout(None)
    return json.loads(data), fds


class WarmProcess:
    def __init__(self, path: Path, idle_s: float):
        self.path, self.idle_s = path, idle_s
        self.commands: dict[int, socket.socket] = {}  # forked pid -> its `autodev` process's connection
        self.stopping = False

    def serve(self) -> None:
        listener = self._listen()
        wake_read, wake_write = socket.socketpair()
        wake_write.setblocking(False)
        signal.set_wakeup_fd(wake_write.fileno())  # SIGCHLD wakes the loop when a command ends
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        last_command = time.monotonic()
        try:
            with listener, wake_read, wake_write:
                while not self.stopping and self._ours() and time.monotonic() - last_command < self.idle_s:
                    ready, _, _ = select.select([listener, wake_read], [], [], 1.0)
                    if wake_read in ready:
                        wake_read.recv(4096)
                    if listener in ready:
                        self._take(listener, [wake_read, wake_write])
                    self._reap()
                    if self.commands:
                        last_command = time.monotonic()
                self._let_go()
                while self.commands:  # report the commands still running before leaving
                    if select.select([wake_read], [], [], 1.0)[0]:
                        wake_read.recv(4096)
                    self._reap()
        finally:
            signal.set_wakeup_fd(-1)

    def _listen(self) -> socket.socket:
        for name in PRELOADED:
            importlib.import_module(name)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        building = self.path.with_suffix(f".{os.getpid()}")
        listener.bind(str(building))
        os.chmod(building, 0o600)
        listener.listen(64)
        os.replace(building, self.path)  # clients see the socket only once it takes commands
        self.path.with_suffix(".pid").write_text(str(os.getpid()))
        self.path.with_suffix(".starting").unlink(missing_ok=True)
        self.inode = self.path.stat().st_ino
        return listener

    def _ours(self) -> bool:
        try:
            return self.path.stat().st_ino == self.inode
        except FileNotFoundError:
            return False

    def _let_go(self) -> None:
        if self._ours():
            self.path.unlink(missing_ok=True)
            self.path.with_suffix(".pid").unlink(missing_ok=True)

    def _take(self, listener: socket.socket, own: list[socket.socket]) -> None:
        conn, _ = listener.accept()
        try:
            received = read_request(conn)
        except (OSError, ValueError):
            received = None
        if received is None or threading.active_count() > 1:  # a fork must not lose a thread
            for fd in received[1] if received else []:
                os.close(fd)
            conn.close()  # the `autodev` process runs the command itself
            return
        request, fds = received
        pid = os.fork()
        if pid == 0:
            for other in [listener, *own, *self.commands.values()]:
                other.close()
            raise Forked(conn, request, fds)
        for fd in fds:
            os.close(fd)
        self.commands[pid] = conn

    def _reap(self) -> None:
        while self.commands:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.commands.pop(pid, None)
            if conn is None:
                continue
            ended = {"signal": os.WTERMSIG(status)} if os.WIFSIGNALED(status) else {"exit": os.waitstatus_to_exitcode(status)}
            with contextlib.suppress(OSError), conn:
                conn.sendall((json.dumps(ended) + "\n").encode())


def become_command(forked: Forked) -> None:
    """In the forked copy: take on the command's streams, directory and environment, and run it."""
    request, conn = forked.request, forked.conn
    conn.sendall((json.dumps({"pid": os.getpid()}) + "\n").encode())  # taken: it runs here, whatever happens
    for target, fd in enumerate(forked.fds):
        os.dup2(fd, target)
        os.close(fd)
    for signum in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.setsid()  # its own session, so the warm process's stop signal is not its own
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["autodev", *request["argv"]]
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=stream.isatty())
    _reload_prefect_settings()
    threading.Thread(target=_die_with_caller, args=(conn,), name="autodev-caller", daemon=True).start()
    from autodev.cli.main import main

    main()


def _reload_prefect_settings() -> None:
    """Prefect read its settings and set up logging when it was imported, in the warm process's
    environment: read them again in the command's."""
    from prefect.context import refresh_global_settings_context
    from prefect.logging.configuration import setup_logging

    refresh_global_settings_context()
    setup_logging(incremental=False)


def _die_with_caller(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.recv(1)  # the `autodev` process sends nothing more: this returns when it is gone
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    path = Path(sys.argv[1])
    idle_s = float(os.environ.get("AUTODEV_WARM_IDLE_S", "900"))
    try:
        WarmProcess(path, idle_s).serve()
        return
    except Forked as forked:
        command = forked
    become_command(command)  # outside the except block: the command's own errors read as its own


if __name__ == "__main__":
    main()
