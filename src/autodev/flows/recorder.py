"""The recorder: where the effects of the engine's answers go, in one order.

`record` writes, in one transaction (`Store.write`): the run's document as the engine's state
holds it, the attempts, the step states they settle, the model calls, a new status or plan; its
log lines go first, so the flow's log reads in the order things happened. Then the loop starts
what the answer started, and `announce` sends the events (whoever an event sends to the store
finds there what it tells) and brings the dashboard up to date. Every write a run makes goes
through `Store.write`: opening it, each answer, its end, a crash, a cancellation, the watchdog's
verdict (`open_session`, `Recorder`, `mark_cancelled`, `flows/watchdog.py`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from prefect.events import emit_event

from autodev.blocks.store import LeaseLost, Store
from autodev.core.engine.effects import Effects
from autodev.core.engine.loop import Recorder
from autodev.core.engine.machine import RunEngine
from autodev.core.engine.state import RunState
from autodev.core.errors import BadInput, EnvironmentProblem
from autodev.core.evaluation import evaluate
from autodev.core.events import HeartbeatBeat, InsightChanged, RunEvent, RunFinished, RunStarted
from autodev.core.models import Plan, RunStatus
from autodev.core.recovery import holder_gone_here
from autodev.core.report import RunReport, build_report, morning_summary
from autodev.core.session import Lease, LLMCall, RunWrite, SessionMetadata, SessionRecord
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
    store: Store, plan: Plan, workspace: Path, flow_run_id: str, lease: Lease, metadata: SessionMetadata,
    continue_run: str | None = None,
) -> SessionRecord:  # fmt: skip
    """The run's session, held by this process (`lease`): a new one with `metadata`, or the one
    `continue_run` names. BadInput when there is no such run, or another process that is alive
    holds it (two processes never continue one run at once)."""
    if not continue_run:
        store.sessions.create(flow_run_id, plan, str(workspace), flow_run_id, metadata, lease)
        calls = [LLMCall(purpose="decompose", **usage.model_dump()) for usage in metadata.origin.usage]
        store.write(RunWrite(run_id=flow_run_id, model_calls=calls), lease)
        return _session(store, flow_run_id)
    session = store.sessions.get(continue_run)
    if session is None:
        raise BadInput(f"no run {continue_run!r} in the state store")
    dead_holder = session.owner if holder_gone_here(session.owner) else None
    if not store.leases.take(continue_run, lease, replacing=dead_holder):
        held = _session(store, continue_run)
        until = f", its hold lasts until {held.lease_until:%H:%M:%S} UTC" if held.lease_until else ""
        raise BadInput(
            f"run {continue_run} is being run by another process ({held.owner}{until}): follow it with `autodev status {continue_run}`"
        )
    store.write(RunWrite(run_id=continue_run, status="running", flow_run_id=flow_run_id), lease)
    return _session(store, continue_run)


def _session(store: Store, run_id: str) -> SessionRecord:
    session = store.sessions.get(run_id)
    assert session is not None, run_id
    return session


def mark_cancelled(store: Store, flow_run_id: str) -> None:
    """A run cancelled from the UI or `prefect flow-run cancel`: recorded as failed, held by nobody."""
    for session in store.sessions.with_status(("running", "blocked")):
        if session.flow_run_id == flow_run_id:
            store.write(RunWrite(run_id=session.run_id, metadata=session.metadata.model_copy(update={"phase": "cancelled"}), status="failed"))
            if session.owner:
                store.leases.release(session.run_id, session.owner)


class StoreRecorder(Recorder):
    """Carries out one run's effects (see the module's docstring for the order)."""

    def __init__(
        self, store: Store, run_id: str, events: RunEvents, logger: logging.Logger | logging.LoggerAdapter,
        heartbeat_interval_s: float, lease: Lease | None = None,
    ):  # fmt: skip
        self.store = store
        self.run_id = run_id
        self.lease = lease  # writes are refused once another process holds the run
        self.events = events
        self.logger = logger
        self.dashboard: RunDashboard | None = None
        self.heartbeat_interval_s = heartbeat_interval_s
        self.paused = False  # waiting for a person: the lease thread says the process is alive
        self._last_beat_event = 0.0
        self._doc: SessionMetadata | None = None  # the document as last written

    def started(self, steps: int, workspace: str) -> None:
        self.events.emit(RunStarted(steps=steps, workspace=workspace))

    def record(self, effects: Effects, state: RunState) -> None:
        for note in effects.notes:
            getattr(self.logger, note.level)(note.text)
        change = RunWrite(
            run_id=self.run_id, metadata=state.doc, status=effects.status, plan=effects.plan, attempts=effects.attempts,
            step_states=effects.step_states, model_calls=effects.model_calls,
        )  # fmt: skip
        self.store.write(change, self.lease)
        self._doc = state.doc

    def announce(self, effects: Effects, engine: RunEngine) -> None:
        for event in effects.events:
            self.events.emit(event)
            if isinstance(event, InsightChanged) and self.dashboard and engine.state.doc.next_actions:
                self.dashboard.show_advice(engine.state.doc.next_actions)
        if self.dashboard:
            self.dashboard.update(engine.progress, set(engine.running), engine.state.doc.waits)
        if time.monotonic() - self._last_beat_event >= self.heartbeat_interval_s:
            self._last_beat_event = time.monotonic()
            beat = engine.state.doc.orchestrator_heartbeat
            self.events.emit(HeartbeatBeat(loop_status=beat.loop_status if beat else "", running=list(engine.running)))

    def finish(self, effects: Effects, engine: RunEngine) -> RunReport:
        """The run's end: its status and phase, its report and figures, the dashboard's last
        update, `autodev.run.finished`."""
        self.record(effects, engine.state)
        session = _session(self.store, self.run_id)
        attempts, step_states = self.store.attempts.of(self.run_id), self.store.attempts.states(self.run_id)
        calls = self.store.attempts.model_calls(self.run_id)
        report = build_report(session, attempts, step_states, calls=calls)
        evaluation = evaluate(session, attempts, step_states, calls)
        self.store.write(RunWrite(run_id=self.run_id, metadata=session.metadata.model_copy(update={"evaluation": evaluation})))
        if self.dashboard:
            self.dashboard.finish(engine.progress, report, session.metadata, evaluation)
        self._release()
        summary = morning_summary(report)
        self.events.emit(RunFinished(
            status=report.status, success_rate=report.success_rate, summary=summary.line, suggested_action=summary.action or None,
            tasks=report.tasks,
        ))  # fmt: skip
        return report

    def crashed(self, exc: BaseException) -> None:
        """The run's process raised (or was stopped: Ctrl-C, SIGTERM): the run is failed, and
        says so. When the environment failed (the store, the engine) the run is left as it is,
        to be resumed (`autodev resume`); when another process holds the run now, it is theirs."""
        if self.dashboard:
            self.dashboard.close(wait=False)
        if isinstance(exc, LeaseLost):
            return  # the run goes on in the process that holds it now
        if isinstance(exc, EnvironmentProblem):
            # Still held by this process, which is ending: `autodev status` shows the run's
            # orchestrator gone, and `autodev resume` takes it over.
            self.logger.error("the run stopped (%s): `autodev resume %s` continues it", exc, self.run_id)
            with contextlib.suppress(Exception):  # the store may be what went away
                self._amend(f"stopped: {exc.problem}"[:200])
            return
        self._amend("crashed", status="failed")
        self._release()
        self.events.emit(RunFinished(status="failed", reason="crashed"))

    def _amend(self, phase: str, status: RunStatus | None = None) -> None:
        """The run's document as last written (or stored), with a new phase."""
        doc = self._doc or _session(self.store, self.run_id).metadata
        self.store.write(RunWrite(run_id=self.run_id, metadata=doc.model_copy(update={"phase": phase}), status=status))

    def _release(self) -> None:
        if self.lease is not None:
            self.store.leases.release(self.run_id, self.lease.owner)

    @contextlib.contextmanager
    def keep_alive(self) -> Iterator[None]:
        """Renew the lease every heartbeat interval while the block runs, from a thread: the run
        is held as long as this process lives, even while the loop waits (for a person, a slow
        model call); once the process dies, the lease runs out within a few intervals."""
        lease = self.lease
        if lease is None:
            yield
            return
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.heartbeat_interval_s):
                with contextlib.suppress(Exception):  # a store that is down is the loop's to report
                    self.store.leases.renew(self.run_id, lease)
                if self.paused:  # the loop sends no heartbeat while it waits for a person: say it is alive
                    self.events.emit(HeartbeatBeat(loop_status="waiting for a decision", running=[]))

        thread = threading.Thread(target=renew, name="autodev-lease", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)
