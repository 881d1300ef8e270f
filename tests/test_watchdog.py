"""The watchdog against forged stale metadata: the seed's "forge the metadata to simulate a stall"."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import uuid
from datetime import timedelta

import pytest

from autodev.core.models import utcnow
from autodev.core.plan import parse_plan
from autodev.core.session import Heartbeat, QueueEntry, RunWrite, SessionMetadata
from autodev.core.settings import load_settings
from tests.helpers import autodev_events, store

pytestmark = [pytest.mark.slow, pytest.mark.docker]
PLAN = parse_plan("project: forged\nsteps:\n  - {id: build, run: make}\n")


def forged_session(minutes_ago: float) -> tuple[str, str]:
    run_id, flow_run_id = str(uuid.uuid4()), str(uuid.uuid4())
    s = store()
    s.sessions.create(run_id, PLAN, "/tmp/nowhere", flow_run_id=flow_run_id)
    then = utcnow() - timedelta(minutes=minutes_ago)

    forged = SessionMetadata(
        orchestrator_heartbeat=Heartbeat(ts=then, loop_status="waiting for build"),
        queue=[QueueEntry(queue_id="q1", step_id="build", attempt=1, dispatched_at=then)],
    )
    s.write(RunWrite(run_id=run_id, metadata=forged))
    s.close()
    path = load_settings().database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:  # as if nobody had written since
        conn.execute("UPDATE agent_sessions SET updated_at = ? WHERE run_id = ?", (then.isoformat(), run_id))
    return run_id, flow_run_id


def test_the_watchdog_blocks_runs_whose_heartbeat_is_stale_and_alerts(prefect_api, docker_engine):
    from autodev.flows.watchdog import watchdog

    stale, stale_flow_run = forged_session(minutes_ago=10)
    fresh, _ = forged_session(minutes_ago=0)
    orphan = docker_engine.containers.run(
        "autodev-sandbox:latest", ["sleep", "600"], detach=True, network_mode="none", labels={"autodev.run_id": stale}
    )
    try:
        assert watchdog(stale_after_s=90) == [stale]
    finally:
        with contextlib.suppress(Exception):
            orphan.remove(force=True)

    s = store()
    blocked, untouched = s.sessions.get(stale), s.sessions.get(fresh)
    s.close()
    assert blocked.status == "blocked" and untouched.status == "running"
    (blocker,) = blocked.metadata.blockers
    assert blocker.kind == "watchdog" and blocker.step_id == "build"
    beat = re.search(r"last heartbeat (\d+)s ago", blocker.summary)
    assert beat and 600 <= int(beat.group(1)) < 660, blocker.summary  # forged 10 minutes before the watchdog ran
    assert f"autodev resume {stale}" in blocker.suggested_action
    assert not docker_engine.containers.list(all=True, filters={"label": f"autodev.run_id={stale}"})

    (event,) = autodev_events(prefect_api, stale_flow_run, until="autodev.run.blocked")
    assert event["event"] == "autodev.run.blocked"
    assert event["payload"]["reason"] == "watchdog" and event["payload"]["containers_removed"] == 1
    assert watchdog(stale_after_s=90) == []  # once blocked, a run is not reported again
