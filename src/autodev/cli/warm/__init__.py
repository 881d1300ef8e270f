"""autodev's warm process, behind one call: `hand_over(argv)` runs a command in it, or says it did not.

Importing Prefect and the flow engine costs a new process 1.5-2 s of CPU before its first
command. The warm process (`server.py`) has paid that once: it forks a copy of itself for each
command, which runs with this process's arguments, directory, environment and terminal (its
standard streams are passed over a Unix socket). This side uses the standard library only, so
handing a command over costs milliseconds; when no warm process answers, the caller runs the
command itself and a warm process is started in the background for the next ones.

One warm process serves one version of the code (its socket is named after it, `registry.py`)
and stops after AUTODEV_WARM_IDLE_S seconds without a command (default 900); `autodev server
stop` stops it. AUTODEV_WARM=off runs every command in its own process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys
from pathlib import Path

from autodev.cli.warm.registry import (
    code_version,
    running_warm_processes,
    socket_path,
    start_warm_process,
    stop_warm_processes,
)  # fmt: skip

__all__ = ["code_version", "hand_over", "running_warm_processes", "socket_path", "start_warm_process", "stop_warm_processes"]

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes


def hand_over(argv: list[str], env=os.environ) -> int | None:
    """The exit code of `argv` run in the warm process; None when the caller must run it itself
    (a warm process is then started for the next commands, unless AUTODEV_WARM=off)."""
    if not uses_warm_process(argv, env):
        return None
    path = socket_path(env)
    if len(str(path)) > MAX_SOCKET_PATH:
        return None
    code = send_command(path, argv) if path.exists() else None
    if code is None:
        start_warm_process(path, env)
    return code


def uses_warm_process(argv: list[str], env=os.environ) -> bool:
    """Every command but `autodev server ...` (it stops warm processes) goes to one, unless AUTODEV_WARM=off."""
    return env.get("AUTODEV_WARM", "on").lower() not in ("off", "0", "false", "no") and argv[:1] != ["server"]


def send_command(path: Path, argv: list[str]) -> int | None:
    """Run `argv` in the warm process at `path`; its exit code, or None if no warm process took it
    (nothing was started then)."""
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(str(path))
        umask = os.umask(0o022)
        os.umask(umask)
        request = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "umask": umask}).encode()
        socket.send_fds(conn, [struct.pack("!I", len(request)) + request], [0, 1, 2])
        replies = conn.makefile("r", encoding="utf-8")
        started = json.loads(replies.readline() or "{}")
    except (OSError, ValueError):
        return None
    if "pid" not in started:
        return None  # refused (another user, a busy process): run here
    return _follow(replies, started["pid"])


def _follow(replies, pid: int) -> int:
    """Forward this process's signals to the command's process until it reports how it ended."""
    for signum in FORWARDED:
        signal.signal(signum, lambda number, _frame: _forward(pid, number))
    ended = json.loads(replies.readline() or "{}")
    if "exit" in ended:
        return ended["exit"]
    if "signal" in ended:  # end the same way, so a parent sees what the command's process saw
        sys.stdout.flush()
        with contextlib.suppress(OSError, ValueError):  # SIGKILL and SIGSTOP keep their default
            signal.signal(ended["signal"], signal.SIG_DFL)
        os.kill(os.getpid(), ended["signal"])
        return 128 + ended["signal"]
    print(f"error: autodev's warm process stopped answering for its command (pid {pid})", file=sys.stderr)
    return 1


def _forward(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
