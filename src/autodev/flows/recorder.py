"""The recorder: carries out the run engine's outcomes, in the order the store needs.

For each outcome (`src/autodev/core/run_engine.py`):
1. the attempt and the step states it settles, in one transaction: a result is never stored
   without the states it settles, and whoever an event sends to the store finds it there;
2. the model calls it made;
3. the events (Prefect events: the notification automations follow them);
4. the log lines.
Its metadata changes are merged and written once per loop iteration (`flush`), with the
heartbeat, and then the dashboard is brought up to date. Every write a run makes to its session
goes through here: opening it, each iteration, the end, a crash, a cancellation.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from prefect.events import emit_event

from autodev.blocks.store_base import LeaseLost, StoreBackend
from autodev.core.errors import BadInput, EnvironmentProblem
from autodev.core.evaluation import evaluate
from autodev.core.events import HeartbeatBeat, InsightChanged, RunEvent, RunFinished, RunStarted
from autodev.core.models import Plan, RunReport, utcnow
from autodev.core.outcomes import Outcome
from autodev.core.recovery import holder_gone_here
from autodev.core.report import build_report
from autodev.core.run_engine import RunEngine
from autodev.core.session import Heartbeat, Lease, MetadataChanges, SessionMetadata, SessionRecord
from autodev.flows.dashboard import RunDashboard


class RunEvents:
    """Prefect events about one run; the resource is the flow run, so automations can follow it."""

    def __init__(self, flow_run_id: str, run_id: str, project: str):
        self.resource = {
            "prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
            "autodev.run_id": run_id,
            "autodev.project": project,
        }

    def emit(self, event: RunEvent) -> None:
        emit_event(event=event.name, resource=self.resource, payload=event.payload())


def open_session(
    store: StoreBackend,
    plan: Plan,
    workspace: Path,
    flow_run_id: str,
    lease: Lease,
    metadata: SessionMetadata,
    continue_run: str | None = None,
) -> SessionRecord:
    """The run's session, held by this process (`lease`): a new one with `metadata`, or the one
    `continue_run` names. BadInput when there is no such run, or another process that is alive
    holds it (two processes never continue one run at once)."""
    if not continue_run:
        store.create_session(flow_run_id, plan, str(workspace), flow_run_id, metadata, lease)
        for usage in metadata.origin.usage:
            store.record_llm_usage(flow_run_id, "decompose", usage)
        return store.get_session(flow_run_id)
    session = store.get_session(continue_run)
    if session is None:
        raise BadInput(f"no run {continue_run!r} in the state store")
    dead_holder = session.owner if holder_gone_here(session.owner) else None
    if not store.take_lease(continue_run, lease, replacing=dead_holder):
        held = store.get_session(continue_run)
        until = f", its hold lasts until {held.lease_until:%H:%M:%S} UTC" if held.lease_until else ""
        raise BadInput(
            f"run {continue_run} is being run by another process ({held.owner}{until}): "
            f"follow it with `autodev status {continue_run}`"
        )
    store.update_session(continue_run, status="running", flow_run_id=flow_run_id, lease=lease)
    return store.get_session(continue_run)


def mark_cancelled(store: StoreBackend, flow_run_id: str) -> None:
    """A run cancelled from the UI or `prefect flow-run cancel`: recorded as failed, held by nobody."""
    for session in store.sessions(("running", "blocked")):
        if session.flow_run_id == flow_run_id:
            store.update_session(session.run_id, MetadataChanges(phase="cancelled").apply, status="failed")
            if session.owner:
                store.release_lease(session.run_id, session.owner)


class Recorder:
    """Carries out one run's outcomes (see the module's docstring for the order)."""

    def __init__(
        self,
        store: StoreBackend,
        run_id: str,
        events: RunEvents,
        logger: logging.Logger | logging.LoggerAdapter,
        heartbeat_interval_s: float,
        lease: Lease | None = None,
    ):
        self.store = store
        self.run_id = run_id
        self.lease = lease  # writes are refused once another process holds the run
        self.events = events
        self.logger = logger
        self.dashboard: RunDashboard | None = None
        self.heartbeat_interval_s = heartbeat_interval_s
        self.paused = False  # waiting for a person: the lease thread says the process is alive
        self._pending = MetadataChanges()
        self._held: list[tuple[RunEvent, Outcome]] = []  # events waiting for the write that holds what they tell
        self._dirty = False
        self._last_beat_event = 0.0

    def started(self, steps: int, workspace: str) -> None:
        self.events.emit(RunStarted(steps=steps, workspace=workspace))

    def record(self, outcome: Outcome) -> None:
        """Store and log what the outcome says. What must not be lost is written now, in one
        transaction: the attempt, the step states it settles and its durable metadata changes
        (a blocker, a decision, a feedback round), or a decision's status and plan. The rest of
        its metadata changes wait for the iteration's write (`save`), and its events are sent
        after that write, so whoever an event sends to the store finds there what it tells."""
        if outcome.is_empty:
            return
        durable = outcome.changes.durable()
        keep = durable.apply if durable is not None else None
        if outcome.attempt is not None:
            self.store.record_attempt(outcome.attempt, outcome.step_states, keep, self.lease)
        elif keep or outcome.step_states or outcome.status or outcome.plan:
            self.store.update_session(
                self.run_id, keep, status=outcome.status, plan=outcome.plan, lease=self.lease, step_states=outcome.step_states
            )
        for call in outcome.model_calls:
            self.store.record_llm_usage(self.run_id, call.purpose, call)
        for note in outcome.notes:
            getattr(self.logger, note.level)(note.text)
        self._pending.merge(outcome.changes, skip=MetadataChanges.DURABLE)
        self._held += [(event, outcome) for event in outcome.events]
        self._dirty = True

    @property
    def has_news(self) -> bool:
        return self._dirty

    def save(self, heartbeat: Heartbeat | None = None, last_output_at: datetime | None = None) -> None:
        """Write the metadata changes recorded since the last write, in one write; then send the
        events held for it."""
        changes, self._pending, self._dirty = self._pending, MetadataChanges(), False
        changes.merge(MetadataChanges(heartbeat=heartbeat, last_output_at=last_output_at))
        self.store.update_session(self.run_id, changes.apply, lease=self.lease)
        held, self._held = self._held, []
        for event, outcome in held:
            self.events.emit(event)
            if isinstance(event, InsightChanged) and self.dashboard and outcome.changes.next_actions:
                self.dashboard.show_advice(outcome.changes.next_actions)

    def beat(self, loop_status: str) -> None:
        """Only the heartbeat, saying what the run waits for (before its loop beats itself)."""
        self.save(Heartbeat(ts=utcnow(), loop_status=loop_status))

    def flush(self, loop_status: str, engine: RunEngine, last_output_at: datetime | None = None) -> None:
        """`save`, with the heartbeat (`orchestrator_heartbeat`, the latest output time); then the
        dashboard, and an `autodev.heartbeat` event at most once per heartbeat interval."""
        self.save(Heartbeat(ts=utcnow(), loop_status=loop_status), last_output_at)
        if self.dashboard:
            self.dashboard.update(engine.progress, set(engine.running))
        if time.monotonic() - self._last_beat_event >= self.heartbeat_interval_s:
            self._last_beat_event = time.monotonic()
            self.events.emit(HeartbeatBeat(loop_status=loop_status, running=list(engine.running)))

    def finish(self, engine: RunEngine) -> RunReport:
        """The run's end: its status and phase, its report and figures, the dashboard's last
        update, `autodev.run.finished`."""
        self.record(engine.finish())
        self.save()  # the loop's last heartbeat stays: it says what the loop did last
        session = self.store.get_session(self.run_id)
        attempts, step_states = self.store.attempts(self.run_id), self.store.step_states(self.run_id)
        report = build_report(session, attempts, step_states)
        evaluation = evaluate(session, attempts, step_states, self.store.llm_usage(self.run_id))
        self.store.update_session(self.run_id, MetadataChanges(evaluation=evaluation).apply)
        if self.dashboard:
            self.dashboard.finish(engine.progress, report, session.metadata, evaluation)
        self._release()
        self.events.emit(RunFinished(status=report.status, success_rate=report.success_rate))
        return report

    def crashed(self, exc: BaseException) -> None:
        """The run's process raised (or was stopped: Ctrl-C, SIGTERM): the run is failed, and
        says so. When the environment failed (the store, the engine) the run is left as it is,
        to be resumed (`autodev resume`); when another process holds the run now, it is theirs."""
        if isinstance(exc, EnvironmentProblem) and not isinstance(exc, LeaseLost):
            # Still held by this process, which is ending: `autodev status` shows the run's
            # orchestrator gone, and `autodev resume` takes it over.
            self.logger.error("the run stopped (%s): `autodev resume %s` continues it", exc, self.run_id)
            with contextlib.suppress(Exception):  # the store may be what went away
                self.store.update_session(self.run_id, MetadataChanges(phase=f"stopped: {exc.problem}"[:200]).apply)
            return
        if isinstance(exc, LeaseLost):
            return  # the run goes on in the process that holds it now
        self.store.update_session(self.run_id, MetadataChanges(phase="crashed").apply, status="failed")
        self._release()
        self.events.emit(RunFinished(status="failed", reason="crashed"))

    def _release(self) -> None:
        if self.lease is not None:
            self.store.release_lease(self.run_id, self.lease.owner)

    @contextlib.contextmanager
    def keep_alive(self) -> Iterator[None]:
        """Renew the lease every heartbeat interval while the block runs, from a thread: the run
        is held as long as this process lives, even while the loop waits (for a person, a slow
        model call); once the process dies, the lease runs out within a few intervals."""
        if self.lease is None:
            yield
            return
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.heartbeat_interval_s):
                with contextlib.suppress(Exception):  # a store that is down is the loop's to report
                    self.store.renew_lease(self.run_id, self.lease)
                if self.paused:  # the loop sends no heartbeat while it waits for a person: say it is alive
                    self.events.emit(HeartbeatBeat(loop_status="waiting for a decision", running=[]))

        thread = threading.Thread(target=renew, name="autodev-lease", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)
