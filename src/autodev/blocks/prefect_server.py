"""The local Prefect server autodev manages when PREFECT_API_URL is not set.

Prefect's own answer to "no API URL" is a temporary server per process: 10-13 s before each
run's first command, and its UI gone when the run ends. Instead, the first run starts one
`prefect server start` in the background, on loopback, with its own PREFECT_HOME, log and PID
under `~/.autodev/server/`; the next runs find it answering and use it; `autodev server stop`
stops it. Two runs starting at once start one server (a file lock). The setting
`AUTODEV_PREFECT_SERVER=temporary` keeps Prefect's temporary server instead: `temporary_server`
starts it for one run and stops it once it has recorded that run's task runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from autodev.core.errors import EnvironmentProblem

START_TIMEOUT_S = 90  # a first start creates the server's database: 10-15 s on two cores
STOP_TIMEOUT_S = 15
SETTLE_TIMEOUT_S = 5  # beyond the task-run recorder's flush interval
UNFINISHED = ["SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING"]


class ServerState(BaseModel):
    """Where the managed server is, and whether it answers."""

    url: str | None = None  # http://127.0.0.1:PORT/api
    pid: int | None = None
    running: bool = False
    log: str
    home: str


class ManagedServer:
    def __init__(self, home: Path):
        self.home = home
        self.pid_file, self.url_file, self.log = home / "server.pid", home / "server.url", home / "server.log"

    def state(self) -> ServerState:
        url, pid = self._read(self.url_file), self._read(self.pid_file)
        pid_number = int(pid) if pid and pid.isdigit() else None
        running = bool(url and pid_number and _alive(pid_number) and _healthy(url))
        return ServerState(url=url, pid=pid_number, running=running, log=str(self.log), home=str(self.home))

    def ensure(self, say=None) -> str:
        """The API URL of the managed server, started first if it does not answer."""
        state = self.state()
        if state.running and state.url:
            return state.url
        with self._lock():
            state = self.state()  # another process may have started it while this one waited
            if state.running and state.url:
                return state.url
            return self._start(say)

    def stop(self) -> ServerState:
        """Stop the server (SIGTERM, then SIGKILL after STOP_TIMEOUT_S); its state before."""
        state = self.state()
        if state.pid is not None and _alive(state.pid) and _is_prefect_server(state.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(state.pid, signal.SIGTERM)  # the server and the workers uvicorn runs
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while _alive(state.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(state.pid, signal.SIGKILL)
        for path in (self.pid_file, self.url_file):
            path.unlink(missing_ok=True)
        return state

    def _start(self, say) -> str:
        self.home.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        url = f"http://127.0.0.1:{port}/api"
        env = {
            # As prefect.toml sets for servers started in the repository, wherever this one starts
            # (a user's own value wins): task-run states recorded in batches halve the server's
            # CPU per short step.
            "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "50",
            "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
            **os.environ,
            "PREFECT_HOME": str(self.home / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
        }
        env.pop("PREFECT_API_URL", None)
        with open(self.log, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip
        self.pid_file.write_text(str(process.pid))
        self.url_file.write_text(url)
        if say:
            say(f"started a local Prefect server at {url.removesuffix('/api')} (log: {self.log}; `autodev server stop` stops it)")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log.read_text(errors="replace")[-1500:]
                raise EnvironmentProblem(
                    f"the local Prefect server did not start ({'it exited' if process.poll() is not None else 'no answer'}); "
                    f"the end of {self.log}:\n{tail}",
                    "read the log; or set PREFECT_API_URL to a server of yours, or AUTODEV_PREFECT_SERVER=temporary",
                )
            time.sleep(0.2)
        return url

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / "server.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    @staticmethod
    def _read(path: Path) -> str | None:
        try:
            return path.read_text().strip() or None
        except OSError:
            return None


@contextlib.contextmanager
def temporary_server() -> Iterator[str]:
    """Prefect's temporary server for one run: its API URL. It stops only once it has recorded
    the task runs this process started: the server records task-run states from events, in
    batches, and stopping it mid-batch logs Prefect's recorder errors and a traceback."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    since = datetime.now(UTC).isoformat()
    server = SubprocessASGIServer()
    server.start()
    try:
        yield server.api_url
    finally:
        flush_interval = get_current_settings().server.services.task_run_recorder.flush_interval
        _wait_until_recorded(server.api_url, since, quiet_s=flush_interval + 0.3)
        server.stop()


def _wait_until_recorded(url: str, since: str, quiet_s: float) -> None:
    """Until no task run started since `since` is unfinished and the count has not moved for
    quiet_s (a batch waits up to the flush interval), or SETTLE_TIMEOUT_S beyond that."""
    deadline = time.monotonic() + quiet_s + SETTLE_TIMEOUT_S
    last, quiet_from = None, time.monotonic()
    while time.monotonic() < deadline:
        counts = (_count_task_runs(url, since, None), _count_task_runs(url, since, UNFINISHED))
        if None in counts:
            return  # a server that stopped answering has nothing more to record
        if counts != last:
            last, quiet_from = counts, time.monotonic()
        elif counts[1] == 0 and time.monotonic() - quiet_from >= quiet_s:
            return
        time.sleep(0.25)


def _count_task_runs(url: str, since: str, states: list[str] | None) -> int | None:
    task_runs: dict = {"start_time": {"after_": since}}
    if states:
        task_runs["state"] = {"type": {"any_": states}}
    request = urllib.request.Request(
        f"{url}/task_runs/count", data=json.dumps({"task_runs": task_runs}).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return int(response.read())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie has exited: it is not serving anything
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _is_prefect_server(pid: int) -> bool:
    """The PID file may outlive its process (a reboot): never signal a process that is not ours."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"prefect" in command and b"server" in command and b"start" in command


def _healthy(url: str) -> bool:
    """The server answers its health check (urllib: an httpx client costs ~20 ms to set up)."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except (OSError, ValueError):  # URLError and HTTPError are OSErrors
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
