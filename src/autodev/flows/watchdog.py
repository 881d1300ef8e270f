"""The watchdog flow: finds runs whose orchestrator died or hung, blocks them and raises the alarm.

The plan flow writes its heartbeat into the state store at least every
AUTODEV_HEARTBEAT_INTERVAL_S; a run still marked running whose session nobody has written for
`stale_after_s`, and whose lease its orchestrator no longer renews (`src/autodev/core/recovery.py`), has
lost its orchestrator (the process was killed, the machine rebooted). A loop that hangs in a
live process keeps its lease; the heartbeat automation tells people of that one. Each such run's sandbox container is removed, and the run is marked blocked with a
`watchdog` blocker and announced (`autodev.run.blocked`), so the notification automations fire
(`orchestrator_lost` in `src/autodev/core/recovery.py` says what; the recorder writes and emits it).
Runs on a schedule as the `watchdog` deployment (prefect.yaml), or once: `python -m autodev.flows.watchdog`.
"""

from __future__ import annotations

from datetime import timedelta

from prefect import flow, get_run_logger

from autodev.blocks.sandbox.leftovers import remove_run_containers
from autodev.core.errors import AutodevError
from autodev.core.models import utcnow
from autodev.core.recovery import HEARTBEAT_LATE_S, orchestrator_gone, orchestrator_lost
from autodev.core.session import RunWrite
from autodev.flows.recorder import RunEvents
from autodev.flows.runtime import runtime


@flow(name="autodev-watchdog", persist_result=False)
def watchdog(stale_after_s: float = HEARTBEAT_LATE_S, state_store_block: str | None = None) -> list[str]:
    """Block every running run whose heartbeat is older than `stale_after_s`; return their ids.
    `state_store_block` names a saved state store block (default: AUTODEV_DATABASE_URL)."""
    logger = get_run_logger()
    store = runtime().store(state_store_block)
    now = utcnow()
    found: list[str] = []
    try:
        for session in store.sessions.with_status(("running",), quiet_since=now - timedelta(seconds=stale_after_s)):
            if not orchestrator_gone(session, now):
                continue  # its process holds the run still: alive, only quiet (the heartbeat automation tells)
            try:
                removed: int | None = remove_run_containers(session.run_id)
            except AutodevError as exc:  # no engine here: the block and the alert still matter
                logger.warning("could not remove the sandbox of %s: %s", session.run_id, exc)
                removed = None
            lost = orchestrator_lost(session, now, removed)  # no heartbeat: the orchestrator's last one is the evidence
            store.write(RunWrite(run_id=session.run_id, metadata=lost.doc, status="blocked"))
            RunEvents(session.flow_run_id or session.run_id, session.run_id, session.project).emit(lost.event)
            logger.warning(lost.note)
            found.append(session.run_id)
    finally:
        store.close()
    return found


if __name__ == "__main__":
    watchdog()
