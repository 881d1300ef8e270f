"""autodev's local Prefect server: with no PREFECT_API_URL the first run starts it, the next runs
reuse it, two runs starting at once start one, and `autodev server stop` stops it."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from autodev.blocks.prefect_server import ManagedServer
from autodev.cli.warm import stop_warm_processes
from tests.helpers import AUTODEV

PLAN = "project: served\nsteps:\n  - {id: hello, run: 'echo hello'}\n"


@pytest.fixture
def managed_env(tmp_path: Path):
    """The environment of a user with no PREFECT_API_URL, autodev's home in tmp_path; the
    server is stopped at the end whatever happened."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(AUTODEV_HOME=str(tmp_path / "home"), AUTODEV_PREFECT_SERVER="managed")
    yield env
    ManagedServer(tmp_path / "home" / "server").stop()
    stop_warm_processes(env)


def autodev(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([*AUTODEV, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.docker
def test_runs_share_one_local_server_that_stop_stops(docker_engine, managed_env, tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    # Two runs at once on a machine with no server: one server starts, both runs use it.
    first = [
        subprocess.Popen([*AUTODEV, "exec", str(plan), "--workspace", str(tmp_path / f"ws{i}"), "--json"],
                         env=managed_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=240) for p in first]
    assert [p.returncode for p in first] == [0, 0], outputs
    assert sum("started a local Prefect server" in stderr for _, stderr in outputs) == 1
    state = json.loads(autodev(managed_env, "server", "status", "--json").stdout)
    assert state["running"] and state["url"].startswith("http://127.0.0.1:")

    # The next run reuses it: no start, and its flow run is on that server for the UI afterwards.
    again = autodev(managed_env, "exec", str(plan), "--workspace", str(tmp_path / "ws2"), "--json")
    assert again.returncode == 0, again.stderr
    assert "started a local Prefect server" not in again.stderr and "Starting temporary server" not in again.stderr
    flow_runs = httpx.post(f"{state['url']}/flow_runs/filter", json={}, timeout=10).json()
    assert len([r for r in flow_runs if r["name"].startswith("served-")]) == 3
    assert json.loads(autodev(managed_env, "server", "status", "--json").stdout)["pid"] == state["pid"]
    doctor = autodev({**managed_env, "COLUMNS": "250"}, "doctor")
    assert f"autodev's local server at {state['url']}" in doctor.stdout

    stopped = autodev(managed_env, "server", "stop")
    assert stopped.returncode == 0 and f"stopped the Prefect server (pid {state['pid']})" in stopped.stderr
    deadline = time.monotonic() + 10
    while Path(f"/proc/{state['pid']}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{state['pid']}").exists()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{state['url']}/health", timeout=2)
    assert "not running" in autodev(managed_env, "server", "status").stderr


def test_a_server_that_cannot_start_says_so_with_its_log(tmp_path, monkeypatch):
    """A Prefect that exits at once (here: a bad setting) is an environment problem with the log's end."""
    from autodev.core.errors import EnvironmentProblem

    monkeypatch.setenv("PREFECT_SERVER_API_PORT", "not-a-port")
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "not-a-level")
    server = ManagedServer(tmp_path / "server")
    with pytest.raises(EnvironmentProblem) as caught:
        server.ensure()
    assert "did not start (it exited)" in str(caught.value) and "server.log" in str(caught.value)
    assert not server.state().running and not (tmp_path / "server" / "server.pid").exists()


def test_a_stale_pid_file_never_stops_another_process(tmp_path):
    """After a reboot the PID in server.pid may belong to anything: stop leaves it alone."""
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        home = tmp_path / "server"
        home.mkdir()
        (home / "server.pid").write_text(str(bystander.pid))
        (home / "server.url").write_text("http://127.0.0.1:9/api")
        server = ManagedServer(home)
        assert not server.state().running
        server.stop()
        assert bystander.poll() is None and not (home / "server.pid").exists()
    finally:
        bystander.kill()
        bystander.wait()
