"""Where autodev's warm processes live (`<AUTODEV_HOME>/warm/`): one socket, PID file and log per
version of the code, started, found and stopped here. Standard library only: the `autodev` command uses it
before anything else is imported."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

CODE_ROOT = Path(__file__).resolve().parents[2]  # src/autodev
STARTING_STALE_S = 60


def warm_dir(env=os.environ) -> Path:
    return Path(env.get("AUTODEV_HOME") or Path.home() / ".autodev") / "warm"


def code_version() -> str:
    """What a warm process must have loaded to serve a command of this process: this interpreter,
    this checkout and its files' modification times, the installed libraries."""
    newest = max(entry.stat().st_mtime_ns for entry in CODE_ROOT.rglob("*.py"))  # subpackages included
    libraries = Path(sysconfig.get_paths()["purelib"])
    interpreter = f"{os.path.realpath(sys.executable)}|{sys.prefix}"  # `python` and `python3` are one
    made_of = f"{interpreter}|{CODE_ROOT}|{newest}|{libraries}|{libraries.stat().st_mtime_ns}"
    return hashlib.sha256(made_of.encode()).hexdigest()[:16]


def socket_path(env=os.environ) -> Path:
    return warm_dir(env) / f"{code_version()}.sock"


def start_warm_process(path: Path, env=os.environ) -> None:
    """Start a warm process for `path` (with the environment `env`) in the background, unless one is
    starting already."""
    starting = path.with_suffix(".starting")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            if time.time() - starting.stat().st_mtime > STARTING_STALE_S:
                starting.unlink()  # its starter died before it listened
        os.close(os.open(starting, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError:
        return
    with open(path.with_suffix(".log"), "ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "autodev.cli.warm.server", str(path)], cwd=CODE_ROOT, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip


def running_warm_processes(env=os.environ) -> list[int]:
    """The PIDs of the warm processes of this AUTODEV_HOME that are alive."""
    pids = []
    for pid_file in sorted(warm_dir(env).glob("*.pid")):
        text = pid_file.read_text().strip()
        if text.isdigit() and _is_warm_process(int(text)):
            pids.append(int(text))
    return pids


def stop_warm_processes(env=os.environ) -> list[int]:
    """Stop taking commands (the ones running go on); the PIDs told to stop."""
    stopped = running_warm_processes(env)
    for pid in stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for leftover in (*warm_dir(env).glob("*.sock"), *warm_dir(env).glob("*.pid")):
        leftover.unlink(missing_ok=True)
    return stopped


def _is_warm_process(pid: int) -> bool:
    """A PID file may outlive its process (a reboot): only a `python -m autodev.cli.warm...` counts."""
    try:
        return b"autodev.cli.warm" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
