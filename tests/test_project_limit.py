"""A project's global concurrency limit (Prefect's own control): a run waits for a slot before
its sandbox starts, keeps its heartbeat while it waits, and runs once a slot is free."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from tests.helpers import containers_of, run, store


@pytest.mark.docker
def test_a_run_waits_for_its_projects_slot_with_a_fresh_heartbeat(prefect_api, docker_engine, tmp_path, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency.sync import concurrency

    monkeypatch.setenv("AUTODEV_HEARTBEAT_INTERVAL_S", "0.5")
    project = f"limited-{uuid.uuid4().hex[:6]}"
    name = f"autodev-project-{project}"
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    plan = f"project: {project}\nsteps:\n  - {{id: hello, run: 'echo hello'}}\n"
    reports = []
    try:
        with concurrency(name, occupy=1):  # another run of the project holds the only slot
            runner = threading.Thread(target=lambda: reports.append(run(plan, tmp_path / "ws")[1]))
            runner.start()
            session = wait_for_session(project)
            time.sleep(2)  # four heartbeat intervals of waiting
            waiting = store().sessions.get(session.run_id)
            assert waiting.status == "running" and waiting.metadata.orchestrator_heartbeat is not None
            assert waiting.metadata.orchestrator_heartbeat.loop_status == f"waiting for a slot of the concurrency limit {name}"
            assert time.time() - waiting.metadata.orchestrator_heartbeat.ts.timestamp() < 1.5  # fresh while it waits
            assert not containers_of(docker_engine, session.run_id) and not store().attempts.of(session.run_id)
        runner.join(60)
        assert [r.status for r in reports] == ["succeeded"]
    finally:
        with get_client(sync_client=True) as client:
            client.delete_global_concurrency_limit_by_name(name)


def wait_for_session(project: str, timeout_s: float = 30):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [s for s in store().sessions.recent(20) if s.project == project]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no run of {project} started")
