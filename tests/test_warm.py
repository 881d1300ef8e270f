"""autodev's warm process: a command handed to it runs as if `autodev` ran it (arguments, directory,
environment, terminal, exit code, signals), dies with the `autodev` process that asked for it,
and the warm process stops by itself or with `autodev server stop` without stopping commands."""

from __future__ import annotations

import json
import os
import pty
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from autodev.blocks.sandbox.leftovers import remove_run_containers
from autodev.cli.warm import code_version, running_warm_processes, socket_path, start_warm_process
from tests.helpers import AUTODEV

SLEEPY_PLAN = "project: warm\nsteps:\n  - {id: nap, run: 'sleep 60'}\n"


def wait_for(check, timeout: float = 90, what: str = "it") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def warm_env():
    """An autodev home of its own (a short path, as a Unix socket's must be) with a warm process
    in it; everything it started is stopped at the end."""
    home = Path(tempfile.mkdtemp(prefix="autodev-warm-"))
    env = {**os.environ, "AUTODEV_HOME": str(home), "AUTODEV_WARM": "on"}
    start_warm_process(socket_path(env), env)
    wait_for(lambda: socket_path(env).exists(), what="the warm process to listen")
    yield env
    subprocess.run([*AUTODEV, "server", "stop"], env=env, capture_output=True, timeout=60)
    shutil.rmtree(home, ignore_errors=True)


def autodev(env: dict[str, str], *args: str, **options) -> subprocess.CompletedProcess:
    return subprocess.run([*AUTODEV, *args], env=env, capture_output=True, text=True, timeout=120, **options)


def latest_session(database_url: str):
    from autodev.blocks.store import StateStore

    store = StateStore(database_url=database_url).connect()
    try:
        return store.sessions.latest()
    finally:
        store.close()


def lease_owner_pid(database_url: str) -> int | None:
    """The PID of the process running the store's only run (its lease owner: flow-run@host:pid)."""
    session = latest_session(database_url)
    return int(session.owner.rsplit(":", 1)[1]) if session and session.owner else None


def run_id(database_url: str) -> str:
    return latest_session(database_url).run_id


def gone(pid: int) -> bool:
    """The process has ended (a zombie left for its parent to reap counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_command_runs_in_the_warm_process_as_it_would_in_its_own(warm_env, tmp_path):
    (tmp_path / "bad.yaml").write_text("project: bad\nsteps: [{id: a, run: x, depends_on: [b]}, {id: b, run: y, depends_on: [a]}]\n")
    here, there = (autodev({**warm_env, **extra}, "exec", "bad.yaml", cwd=tmp_path) for extra in ({}, {"AUTODEV_WARM": "off"}))
    # The relative path was found from the caller's directory; the exit code, the streams and
    # what they say are those of the command run in its own process.
    assert here.returncode == there.returncode == 2
    assert here.stderr == there.stderr and "cycle" in here.stderr
    assert here.stdout == there.stdout == ""
    missing = autodev(warm_env, "status", "no-such-run", "--json")
    assert missing.returncode != 0 and "no-such-run" in missing.stderr


def test_on_a_terminal_the_output_is_the_terminals(warm_env, tmp_path):
    """Colours and width are decided by the caller's terminal, not the warm process's log file;
    Prefect's first-import telemetry notice (a terminal's only) is not printed: nothing is sent."""

    def on_a_terminal(extra: dict[str, str]) -> bytes:
        leader, follower = pty.openpty()
        # Prefect shows its notice once per PREFECT_HOME, and never where CI is set.
        env = {**{k: v for k, v in warm_env.items() if k != "CI"}, **extra, "TERM": "xterm-256color",
               "PREFECT_HOME": tempfile.mkdtemp(dir=tmp_path)}  # fmt: skip
        proc = subprocess.Popen([*AUTODEV, "exec", "missing.yaml"], env=env,
                                cwd=tmp_path, stdin=follower, stdout=follower, stderr=follower)  # fmt: skip
        os.close(follower)
        output = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal's other side closed
                break
            if not chunk:
                break
            output += chunk
        assert proc.wait(60) == 2
        os.close(leader)
        return output

    warm, own = on_a_terminal({}), on_a_terminal({"AUTODEV_WARM": "off"})
    assert b"\x1b[" in warm and b"missing.yaml" in warm
    assert warm == own, (warm, own)
    assert b"telemetry" not in own


@pytest.mark.slow
@pytest.mark.docker
def test_a_run_in_the_warm_process_dies_with_a_killed_autodev(docker_engine, prefect_api, warm_env, tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(SLEEPY_PLAN)
    database_url = warm_env["AUTODEV_DATABASE_URL"] = f"sqlite:///{tmp_path / 'store.db'}"
    proc = subprocess.Popen([*AUTODEV, "exec", str(plan), "--workspace", str(tmp_path / "ws")], env=warm_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: lease_owner_pid(database_url) is not None, what="the run to start")
        runner = lease_owner_pid(database_url)
        assert runner != proc.pid  # the run's process is the warm process's fork
        sandboxes = {"label": f"autodev.run_id={run_id(database_url)}"}
        wait_for(lambda: docker_engine.containers.list(filters=sandboxes), what="the sandbox")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # As with `kill -9` of an orchestrator in its own process: the run's process is gone at
        # once (the run is resumable, tests/test_recovery.py), its sandbox left to the next start.
        wait_for(lambda: gone(runner), timeout=10, what="the run's process to die")
    finally:
        proc.kill()
        if latest_session(database_url):
            remove_run_containers(run_id(database_url))


def test_stop_leaves_running_commands_and_signals_reach_them(warm_env):
    """`autodev server stop` stops the warm process taking commands; a command running in it
    goes on, gets the signals its `autodev` process gets, and its end is reported."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serving = subprocess.Popen([*AUTODEV, "metrics", "serve", "--port", str(port)], env=warm_env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: _answers(port), what="the metrics endpoint")
        (warm_pid,) = running_warm_processes(warm_env)
        stopped = autodev(warm_env, "server", "stop", "--json")
        assert json.loads(stopped.stdout)["warm_pids"] == [warm_pid]
        assert not socket_path(warm_env).exists() and _answers(port)
        serving.send_signal(signal.SIGTERM)  # forwarded: the command ends by it, as it would have
        assert serving.wait(30) == -signal.SIGTERM
        wait_for(lambda: gone(warm_pid), timeout=10, what="the warm process to exit")
    finally:
        serving.kill()


def _answers(port: int) -> bool:
    with socket.socket() as conn:
        return conn.connect_ex(("127.0.0.1", port)) == 0


def test_a_warm_process_stops_by_itself_when_idle():
    home = Path(tempfile.mkdtemp(prefix="autodev-idle-"))
    env = {**os.environ, "AUTODEV_HOME": str(home), "AUTODEV_WARM_IDLE_S": "1"}
    try:
        start_warm_process(socket_path(env), env)
        wait_for(lambda: running_warm_processes(env), what="the warm process")
        wait_for(lambda: not running_warm_processes(env) and not socket_path(env).exists(), timeout=30, what="it to stop")
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_another_version_of_the_code_has_a_warm_process_of_its_own(tmp_path, monkeypatch):
    from autodev.cli.warm import registry as warm_registry

    for package in ("flows", "core/engine"):
        (tmp_path / package).mkdir(parents=True)
        (tmp_path / package / "module.py").write_text("")
    monkeypatch.setattr(warm_registry, "CODE_ROOT", tmp_path)
    before = code_version()
    edited = tmp_path / "core" / "engine" / "module.py"  # a subpackage's module counts too
    later = edited.stat().st_mtime_ns + 10**9
    os.utime(edited, ns=(later, later))
    assert code_version() != before
