"""Helpers shared by the end-to-end tests: run a plan through the flow, read what it left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx

from autodev.blocks.llm import LLM
from autodev.blocks.replay import ModelServer
from autodev.blocks.store import StateStore
from autodev.core.errors import RunFailed
from autodev.core.models import utcnow
from autodev.core.plan import parse_plan
from autodev.core.report import RunReport
from autodev.core.settings import load_settings
from tests.services import free_port

AUTODEV = [str(Path(sys.executable).with_name("autodev"))]  # the installed command, as a user runs it


def run(plan_text: str, workspace, **options) -> tuple[object, RunReport]:
    """Run a plan through the flow (`options`: block names...); its final state and report."""
    from autodev.flows.plan_flow import run_plan

    state = run_plan(plan=parse_plan(plan_text), workspace=str(workspace), return_state=True, **options)
    outcome = state.result(raise_on_failure=False)
    return state, outcome.report if isinstance(outcome, RunFailed) else outcome


def exec_json(plan: dict, workspace: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, dict]:
    """`autodev exec PLAN --json` as a user runs it, with `env` as its whole environment: the
    process and its report (empty when it printed none)."""
    path = workspace.with_name(f"{workspace.name}-plan.json")
    path.write_text(json.dumps(plan))
    done = subprocess.run(
        [*AUTODEV, "exec", str(path), "--workspace", str(workspace), "--json"], env=env, capture_output=True, text=True,
        timeout=300,
    )
    return done, json.loads(done.stdout) if done.stdout.strip() else {}


def store():
    return StateStore(database_url=load_settings().database_url).connect()


def autodev_events(api: str, run_id: str, until: str = "autodev.run.finished") -> list[dict]:
    """The autodev.* events the server recorded for a flow run, once the event `until` is among
    them (events arrive asynchronously, and not always in the order they were emitted)."""
    body = {
        "filter": {
            "event": {"prefix": ["autodev."]},
            "resource": {"id": [f"prefect.flow-run.{run_id}"]},
            "occurred": {"since": (utcnow() - timedelta(hours=1)).isoformat()},
            "order": "ASC",
        },
        "limit": 50,
    }
    events: list[dict] = []
    for _ in range(100):
        response = httpx.post(f"{api}/events/filter", json=body)
        response.raise_for_status()
        events = response.json()["events"]
        if any(e["event"] == until for e in events):
            break
        time.sleep(0.1)
    return events


FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def task_runs(api: str, flow_run_id: str, expect: Iterable[str], timeout_s: float = 15) -> list[dict]:
    """The flow run's task runs, once those named in `expect` (a name may repeat) are recorded in
    a final state: the server records task-run states in batches, up to a second late
    (prefect.toml). After `timeout_s` it returns what there is, for the test's assert to show."""
    body = {"flow_runs": {"id": {"any_": [flow_run_id]}}, "sort": "EXPECTED_START_TIME_ASC"}
    wanted, deadline = Counter(expect), time.monotonic() + timeout_s
    while True:
        runs = httpx.post(f"{api}/task_runs/filter", json=body).json()
        done = Counter(t["name"] for t in runs if (t.get("state") or {}).get("type") in FINAL_STATES)
        if not wanted - done or time.monotonic() > deadline:
            return runs
        time.sleep(0.2)


def containers_of(docker_engine, run_id: str):
    return docker_engine.containers.list(all=True, filters={"label": f"autodev.run_id={run_id}"})


class FakeModelServer(ModelServer):
    """Scripted replies, in order: (HTTP status, text[, seconds to wait first]); every request is
    kept for the test."""

    def __init__(self) -> None:
        self.replies: list[tuple[int, str]] = []
        self.requests: list[dict] = []
        super().__init__(self._respond)

    def _respond(self, request: dict) -> tuple[int, str]:
        self.requests.append(request)
        status, text, *delay = self.replies.pop(0)
        time.sleep(delay[0] if delay else 0)
        return status, text

    def llm(self, timeout_s: float = 10) -> LLM:
        return LLM(model="openai/local-test", api_base=self.api_base, api_key="test-key", timeout_s=timeout_s)


@contextmanager
def prefect_server_process(tmp_path, extra_env: dict[str, str] | None = None) -> Iterator[dict[str, str]]:
    """`prefect server start` (API and UI) on a free loopback port, with its own home and
    autodev state store; yields the environment that points a CLI or worker at it."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        **(extra_env or {}),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_UI_API_URL": api,  # what the UI in a browser calls
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "AUTODEV_DATABASE_URL": f"sqlite:///{tmp_path / 'autodev.db'}",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "prefect server start did not come up"
            time.sleep(0.5)
        yield env
    finally:
        server.terminate()
        server.wait(30)
