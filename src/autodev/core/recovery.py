"""Runs whose orchestrator died: how to tell, and what it means for the run.

A run's orchestrator holds the run's lease (`SessionRecord.owner`, `lease_until`) and renews it
every heartbeat interval, for three intervals at a time. A run still marked running or blocked
whose lease ran out, or whose holder's process is gone from this machine, has lost its
orchestrator: `autodev status` says so at once, and `autodev resume` continues it. The watchdog
flow (`src/autodev/flows/watchdog.py`) blocks such runs and raises the alarm (`orchestrator_lost`).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime

from autodev.core.commands import CommandResult
from autodev.core.events import RunBlocked
from autodev.core.models import Blocker, utcnow
from autodev.core.session import LeftAttempt, SessionMetadata, SessionRecord

LEASE_BEATS = 3  # a lease lasts this many heartbeat intervals
HEARTBEAT_LATE_S = 90  # the seed's dashboard turns the heartbeat delay red past this


def heartbeat_delay_s(meta: SessionMetadata, now: datetime) -> float:
    """Seconds since the loop last recorded its heartbeat (infinite if it never did)."""
    if meta.orchestrator_heartbeat is None:
        return float("inf")
    return max((now - meta.orchestrator_heartbeat.ts).total_seconds(), 0.0)


def heartbeat_is_late(meta: SessionMetadata, run_status: str, now: datetime) -> bool:
    """Only a running run's heartbeat can be late (a finished or blocked loop stops beating)."""
    return run_status == "running" and heartbeat_delay_s(meta, now) > HEARTBEAT_LATE_S


def owner_here(flow_run_id: str) -> str:
    """This process as a lease owner: its flow run, machine and process id."""
    return f"{flow_run_id}@{socket.gethostname()}:{os.getpid()}"


def holder_gone_here(owner: str | None) -> bool:
    """The owner ran on this machine and its process is gone (killed, crashed): no need to wait
    for its lease to run out. False when it is elsewhere or cannot be told."""
    if not owner or "@" not in owner:
        return False
    host, _, pid = owner.rpartition("@")[2].rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def orchestrator_gone(session: SessionRecord, now: datetime) -> bool:
    """The run is marked running or blocked, a process held it, and that process is gone: its
    lease ran out, or it is no longer alive on this machine. (A run from before leases counts as
    gone when running and not written for HEARTBEAT_LATE_S.)"""
    if session.status not in ("running", "blocked"):
        return False
    if session.owner is None:  # nobody holds it: it waits, blocked, for a resume (or predates leases)
        return session.status == "running" and (now - session.updated_at).total_seconds() > HEARTBEAT_LATE_S
    expired = session.lease_until is not None and session.lease_until < now
    return expired or holder_gone_here(session.owner)


@dataclass(frozen=True)
class LostRun:
    """What the watchdog records of a run whose orchestrator was lost: its document with the
    `watchdog` blocker (the run is blocked), the event that announces it, the log line."""

    doc: SessionMetadata
    event: RunBlocked
    note: str


def orchestrator_lost(session: SessionRecord, now: datetime, containers_removed: int | None) -> LostRun:
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
    doc = session.metadata.model_copy(deep=True)
    doc.blockers.append(blocker)
    doc.phase = "orchestrator lost"
    return LostRun(doc=doc, event=event, note=f"run {session.run_id} ({session.project}) blocked: {summary}")


def left_result(left: LeftAttempt, tail: str, counts: bool) -> CommandResult:
    """An attempt that outlived its orchestrator, as a result: how it ended when its exit status
    was read from the sandbox and it `counts` (its dependencies are still done), else failed
    with why (still running and killed now, never finished, or run on replaced code)."""
    ended = left.finished_at or utcnow()
    began = min(left.started_at or ended, ended)
    if counts:
        return CommandResult(
            status="succeeded" if left.exit_code == 0 else "failed", exit_code=left.exit_code,
            exit_reason="it ended after its orchestrator died: exit status read from the sandbox; its output after that was not captured",
            started_at=began, finished_at=ended, output_tail=tail, output_bytes=len(tail), log_path=left.log_path,
        )  # fmt: skip
    why = "it was still running when the run was resumed, and was killed" if left.still_running else "it did not finish"
    if left.exit_code is not None:  # it finished, but on code a feedback round was replacing
        why = "it ran on the code before a feedback round"
    return CommandResult(
        status="failed", exit_code=None, exit_reason=f"interrupted: its orchestrator died while it ran; {why}",
        started_at=began, finished_at=ended, output_tail=tail, log_path=left.log_path,
    )  # fmt: skip
