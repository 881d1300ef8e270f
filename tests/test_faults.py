"""Faults, for real: the Docker engine restarted mid-command, PostgreSQL restarted mid-run.

Each test starts its own server (a second dockerd, a second PostgreSQL), on loopback or a Unix
socket in a temporary directory, and stops it at the end; the session's engine and database
are left alone.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port
from tests.test_cli import autodev, write

pytestmark = [pytest.mark.slow, pytest.mark.docker]
IMAGE = os.environ.get("AUTODEV_IMAGE", "autodev-sandbox:latest")


class SecondEngine:
    """A dockerd of its own (socket, data and state under a temporary directory), with the
    sandbox image loaded; it can be stopped and started again like a restarted engine."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="/tmp/ad-engine-"))
        self.host = f"unix://{self.root}/docker.sock"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["dockerd", "--host", self.host, "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
             "--pidfile", str(self.root / "docker.pid"), "--bridge=none", "--iptables=false", "--ip6tables=false"],
            stdout=open(self.root / "dockerd.log", "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115 (the engine owns it)
        )
        deadline = time.monotonic() + 60
        while subprocess.run(["docker", "-H", self.host, "info"], capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, (self.root / "dockerd.log").read_text()[-2000:]
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)

    def docker(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "-H", self.host, *args], capture_output=True, text=True)


@pytest.fixture
def second_engine(docker_engine) -> Iterator[SecondEngine]:
    engine = SecondEngine()
    engine.start()
    try:
        saved = subprocess.Popen(["docker", "save", IMAGE], stdout=subprocess.PIPE)
        subprocess.run(["docker", "-H", engine.host, "load", "-q"], stdin=saved.stdout, check=True, capture_output=True)
        saved.wait(120)
        yield engine
    finally:
        for container in engine.docker("ps", "-aq").stdout.split():
            engine.docker("rm", "-f", container)
        engine.stop()
        shutil.rmtree(engine.root, ignore_errors=True)


ENGINE_PLAN = """
project: engine-restart
steps:
  - {id: before, run: "echo before"}
  - {id: long, run: "echo started; sleep 20; echo finished", depends_on: [before]}
  - {id: after, run: "echo after", depends_on: [long]}
"""


def test_an_engine_restarted_mid_command_blocks_the_run_and_resume_works_once_it_is_back(
    prefect_api, second_engine, tmp_path, monkeypatch
):
    monkeypatch.setenv("DOCKER_HOST", second_engine.host)
    monkeypatch.setenv("AUTODEV_DECISION_TIMEOUT_S", "1")
    plan = write(tmp_path / "plan.yaml", ENGINE_PLAN)
    run = subprocess.Popen(
        [*__import__("tests.helpers", fromlist=["AUTODEV"]).AUTODEV, "exec", str(plan), "--workspace", str(tmp_path / "ws"), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while "sleep 20" not in second_engine.docker("ps", "-q", "--filter", "label=autodev.run_id").stdout and time.monotonic() < deadline:
        ids = second_engine.docker("ps", "-q", "--filter", "label=autodev.run_id").stdout.split()
        if ids and "sleep 20" in second_engine.docker("top", ids[0]).stdout:
            break
        time.sleep(0.3)
    second_engine.stop()  # the engine goes away under the command
    out, err = run.communicate(timeout=120)
    assert run.returncode == 3, err[-3000:]
    report = json.loads(out)
    long = next(s for s in report["steps"] if s["id"] == "long")
    assert long["status"] == "blocked" and long["exit_code"] is None
    (blocker,) = report["blockers"]
    assert blocker["kind"] == "sandbox" and "stopped or restarted" in blocker["suggested_action"]
    assert f"autodev resume {report['run_id']} --action retry" in blocker["suggested_action"]
    assert "out of memory" not in json.dumps(report)

    second_engine.start()
    resumed = autodev("resume", report["run_id"], "--action", "retry", "--json")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    done = json.loads(resumed.stdout)
    assert [(s["id"], s["status"]) for s in done["steps"]] == [("before", "succeeded"), ("long", "succeeded"), ("after", "succeeded")]
    assert "finished" in next(s for s in done["steps"] if s["id"] == "long")["output_tail"]
    assert not second_engine.docker("ps", "-aq", "--filter", f"label=autodev.run_id={report['run_id']}").stdout.strip()


class SecondPostgres:
    """A PostgreSQL server of its own on loopback, which the test restarts."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        assert bins, "PostgreSQL server binaries are missing: apt-get install postgresql (scripts/test.sh does)"
        self.bindir = Path(bins[-1]).parent
        self.root = Path(tempfile.mkdtemp(prefix="autodev-pg2-"))
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # postgres refuses to run as root
            shutil.chown(self.root, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.port = free_port()
        self.data = self.root / "data"
        subprocess.run([*self.as_user, str(self.bindir / "initdb"), "-D", str(self.data), "-U", "autodev", "--auth=trust"],
                       check=True, capture_output=True)
        self.url = f"postgresql://autodev@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str) -> None:
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        subprocess.run([*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts,
                        "-l", str(self.root / "log"), "-w", *args], check=True, capture_output=True)


@pytest.fixture
def second_postgres() -> Iterator[SecondPostgres]:
    server = SecondPostgres()
    server.pg_ctl("start")
    try:
        yield server
    finally:
        subprocess.run([*server.as_user, str(server.bindir / "pg_ctl"), "-D", str(server.data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(server.root, ignore_errors=True)


PG_PLAN = "project: pg-restart\nsteps:\n" + "".join(
    f"  - {{id: s{n}, run: 'sleep 0.5; echo s{n}'{', depends_on: [s' + str(n - 1) + ']' if n > 1 else ''}}}\n" for n in range(1, 9)
)


def test_a_postgres_restart_mid_run_loses_nothing_and_a_long_outage_stops_the_run_resumably(
    prefect_api, docker_engine, second_postgres, tmp_path, monkeypatch
):
    monkeypatch.setenv("AUTODEV_DATABASE_URL", second_postgres.url)
    plan = write(tmp_path / "plan.yaml", PG_PLAN)
    from tests.helpers import AUTODEV

    run = subprocess.Popen([*AUTODEV, "exec", str(plan), "--workspace", str(tmp_path / "ws"), "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)  # a few steps in
    second_postgres.pg_ctl("restart", "-m", "fast")  # the database goes away for a moment
    out, err = run.communicate(timeout=180)
    assert run.returncode == 0, err[-3000:]
    report = json.loads(out)
    assert [s["attempts"] for s in report["steps"]] == [1] * 8 and report["status"] == "succeeded"

    # Past AUTODEV_STORE_RETRY_S the run stops with a clear error, and resumes once the database is back.
    monkeypatch.setenv("AUTODEV_STORE_RETRY_S", "3")
    run = subprocess.Popen([*AUTODEV, "exec", str(plan), "--workspace", str(tmp_path / "ws2"), "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)
    second_postgres.pg_ctl("stop", "-m", "fast")
    out, err = run.communicate(timeout=180)
    assert run.returncode == 4, err[-3000:]
    assert "the state store did not answer for 3s" in err and "autodev resume" in err
    second_postgres.pg_ctl("start")
    status = json.loads(autodev("status", "--json").stdout)
    assert status["status"] == "running" and status["orchestrator_gone"]
    resumed = autodev("resume", status["run_id"], "--json")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    done = json.loads(resumed.stdout)
    assert done["status"] == "succeeded" and all(s["status"] == "succeeded" for s in done["steps"])
