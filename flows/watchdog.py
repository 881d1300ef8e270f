"""The watchdog flow: finds runs whose orchestrator died or hung, blocks them and raises the alarm.

The plan flow writes its heartbeat into the state store at least every
AUTODEV_HEARTBEAT_INTERVAL_S; a run still marked running whose session nobody has written for
`stale_after_s` has lost its orchestrator (the process was killed, the machine rebooted, the
loop hung). Each such run is marked blocked with a `watchdog` blocker, its sandbox container
is removed, and `autodev.run.blocked` is emitted so the notification automations fire.
Runs on a schedule as the `watchdog` deployment (prefect.yaml), or once: `python -m flows.watchdog`.
"""

from __future__ import annotations

from datetime import timedelta

from prefect import flow, get_run_logger
from prefect.events import emit_event

from autodev.errors import AutodevError
from autodev.models import Blocker, SessionMetadata, SessionRecord, utcnow
from autodev.policy import HEARTBEAT_LATE_S, heartbeat_delay_s
from autodev.settings import load_settings
from blocks.docker_sandbox import remove_run_containers
from blocks.state_store import StateStore


@flow(name="autodev-watchdog", persist_result=False)
def watchdog(stale_after_s: float = HEARTBEAT_LATE_S) -> list[str]:
    """Block every running run whose heartbeat is older than `stale_after_s`; return their ids."""
    logger = get_run_logger()
    store = StateStore(database_url=load_settings().database_url).connect()
    now = utcnow()
    found: list[str] = []
    try:
        for session in store.quiet_sessions(now - timedelta(seconds=stale_after_s)):
            delay = heartbeat_delay_s(session.metadata, now)
            summary = (
                f"the orchestrator of this run went quiet: last heartbeat {delay:.0f}s ago"
                if delay != float("inf")
                else "the orchestrator of this run never recorded a heartbeat"
            )
            blocker = Blocker(
                step_id=_current_step(session),
                command="",
                exit_code=None,
                summary=summary,
                suggested_action=(
                    "the process running this flow died or hung: check the worker or machine it ran on, "
                    f"then continue it with `autodev resume {session.run_id} --action retry`"
                ),
                kind="watchdog",
                ts=now,
            )

            def block(m: SessionMetadata, b: Blocker = blocker) -> None:
                m.blockers.append(b)
                m.phase = "orchestrator lost"

            store.update_session(session.run_id, block, status="blocked")
            try:
                removed: int | None = remove_run_containers(session.run_id)
            except AutodevError as exc:  # no engine here: the block and the alert still matter
                logger.warning("could not remove the sandbox of %s: %s", session.run_id, exc)
                removed = None
            emit_event(
                event="autodev.run.blocked",
                resource={
                    "prefect.resource.id": f"prefect.flow-run.{session.flow_run_id}",
                    "autodev.run_id": session.run_id,
                    "autodev.project": session.project,
                },
                payload={
                    "step": blocker.step_id,
                    "reason": "watchdog",
                    "summary": blocker.summary,
                    "suggested_action": blocker.suggested_action,
                    "heartbeat_delay_s": None if delay == float("inf") else round(delay, 1),
                    "containers_removed": removed,
                },
            )
            logger.warning("run %s (%s) blocked: %s", session.run_id, session.project, summary)
            found.append(session.run_id)
    finally:
        store.close()
    return found


def _current_step(session: SessionRecord) -> str:
    """The step the run was busy with: its oldest dispatched, unfinished one, else its phase."""
    queue = session.metadata.queue
    return queue[0].step_id if queue else session.metadata.phase


if __name__ == "__main__":
    watchdog()
