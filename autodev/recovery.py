"""Runs whose orchestrator died: what that means for the run, as plain code over its record.

The watchdog flow (`flows/watchdog.py`) finds running runs that nobody has written for too long
(every heartbeat writes) and records what `orchestrator_lost` says.
"""

from __future__ import annotations

from datetime import datetime

from autodev.events import RunBlocked
from autodev.outcomes import Note, Outcome
from autodev.policy import heartbeat_delay_s
from autodev.session import Blocker, MetadataChanges, SessionRecord


def orchestrator_lost(session: SessionRecord, now: datetime, containers_removed: int | None) -> Outcome:
    """A running run whose session nobody has written for too long (the watchdog found it): its
    orchestrator died or hung. The run is blocked with a `watchdog` blocker at the step it was
    busy with, so a person is told and can continue it."""
    delay = heartbeat_delay_s(session.metadata, now)
    summary = (
        f"the orchestrator of this run went quiet: last heartbeat {delay:.0f}s ago"
        if delay != float("inf")
        else "the orchestrator of this run never recorded a heartbeat"
    )
    queue = session.metadata.queue  # what it had dispatched and not seen end, oldest first
    blocker = Blocker(
        step_id=queue[0].step_id if queue else session.metadata.phase,
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
    event = RunBlocked(
        step=blocker.step_id, command="", exit_code=None, status="blocked", reason="watchdog", summary=summary,
        suggested_action=blocker.suggested_action, heartbeat_delay_s=None if delay == float("inf") else round(delay, 1),
        containers_removed=containers_removed,
    )
    return Outcome(
        changes=MetadataChanges(blockers=[blocker], phase="orchestrator lost"),
        events=[event],
        notes=[Note("warning", f"run {session.run_id} ({session.project}) blocked: {summary}")],
        status="blocked",
    )
