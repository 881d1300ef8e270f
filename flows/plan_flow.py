"""The plan flow: a validated plan run as a Prefect flow, one task per command, in one sandbox.

The flow body reads like the process: open the run's sandbox, loop `run_once` until no step
can run, report. Each loop iteration dispatches the steps whose dependencies succeeded,
waits for results, and writes them to the state store: the queue, the phase, the command
history and blockers in the session's metadata, every attempt in the results table.
"""

from __future__ import annotations

import os
import queue
from collections.abc import Callable, Iterator
from contextlib import contextmanager
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, pause_flow_run, runtime
from prefect.events import emit_event
from prefect.exceptions import FlowPauseTimeout
from prefect.futures import PrefectFuture
from prefect.input import RunInput
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.states import Failed, Running
from prefect.utilities.annotations import quote
from pydantic import Field

from autodev import metrics
from autodev.agent import agent_cli_command, failure_evidence
from autodev.errors import BadInput, CommandFailed, RunFailed
from autodev.evaluation import evaluate
from autodev.diagnosis import diagnose, fingerprint
from autodev.insights import advise, changed as insight_changed
from autodev.models import (
    Blocker,
    CommandRequest,
    CommandResult,
    GitState,
    Heartbeat,
    Insight,
    Intervention,
    LastCommandResult,
    LLMUsage,
    Pause,
    Plan,
    QueueEntry,
    RunOrigin,
    SessionMetadata,
    Step,
    StepAttempt,
    utcnow,
)
from autodev.policy import FailureBreaker, next_move
from autodev.redact import Redactor
from autodev.replay import REPLAY_MODEL, ReplayServer, load_cassette
from autodev.report import build_report
from autodev.scaffold import todo_files_in
from autodev.scheduling import FAILED_STATUSES, Progress
from autodev.settings import Settings, load_settings
from blocks.docker_sandbox import DockerSandbox, remove_run_containers
from blocks.git_state import read_git_state
from blocks.llm import LLM
from flows.dashboard import RunDashboard, artifact_key
from blocks.sandbox import SandboxSession
from blocks.state_store import StateStore, StoreBackend
from tasks.agent import run_agent
from tasks.insights import compute_insight
from tasks.run_command import Capture, run_command


def _flow_run_name() -> str:
    plan = runtime.flow_run.parameters.get("plan")
    project = plan.get("project") if isinstance(plan, dict) else getattr(plan, "project", "plan")
    return f"{project}-{datetime.now():%Y%m%d-%H%M%S}"


class Decision(RunInput):
    """A person's answer to a blocked run; the Prefect UI shows it as a form under the evidence."""

    action: Literal["retry", "skip", "abort"] = Field(
        "retry", description="retry the blocked step, skip it and go on, or abort the run"
    )
    command: str | None = Field(None, description="optional: retry with this command instead of the plan's")
    note: str = Field("", description="why; kept with the run as an intervention")


def state_store_config(block_name: str | None) -> StateStore:
    """The state store block saved under `block_name`, or the one AUTODEV_DATABASE_URL describes."""
    if block_name:
        return StateStore.load(block_name)
    return StateStore(database_url=load_settings().database_url)


def llm_config(block_name: str | None) -> LLM | None:
    """The LLM block saved under `block_name`, or the model AUTODEV_LLM_MODEL names, or none."""
    if block_name:
        return LLM.load(block_name)
    settings = load_settings()
    if not settings.llm_model:
        return None
    return LLM(
        model=settings.llm_model,
        api_base=settings.llm_api_base,
        api_key=settings.llm_api_key,
        timeout_s=settings.llm_timeout_s,
    )


@contextmanager
def model_for(llm_block: str | None, replay: str | None, say: Callable[[str], None] | None = None) -> Iterator[LLM | None]:
    """The run's model: the LLM block or AUTODEV_LLM_MODEL; when neither is configured and
    `replay` names a file, its stored responses replayed by a local server (offline runs).
    `say` tells which (default: the flow run's log)."""
    configured = llm_config(llm_block)
    if configured is not None or not replay:
        yield configured
        return
    with ReplayServer(load_cassette(replay)) as server:
        (say or get_run_logger().info)(f"model answers are replayed from {replay} by a local server, not asked of a model")
        yield LLM.replaying(server.api_base, load_settings().llm_timeout_s)


def _on_cancellation(flow, flow_run, state) -> None:
    """Cancelled from the UI or `prefect flow-run cancel`: the worker stops the flow's process,
    and this hook (run by the worker) removes the run's sandbox and records the run as failed."""
    remove_run_containers(str(flow_run.id), label="autodev.flow_run_id")
    store = state_store_config(flow_run.parameters.get("state_store_block")).connect()
    try:
        for session in store.sessions_with_status(("running", "blocked")):
            if session.flow_run_id == str(flow_run.id):
                store.update_session(session.run_id, lambda m: setattr(m, "phase", "cancelled"), status="failed")
    finally:
        store.close()


@flow(
    name="autodev-plan",
    flow_run_name=_flow_run_name,
    persist_result=False,
    on_cancellation=[_on_cancellation],
)
def run_plan(
    plan: Plan,
    workspace: str,
    continue_run: str | None = None,
    decision: Decision | None = None,
    sandbox_block: str | None = None,
    state_store_block: str | None = None,
    llm_block: str | None = None,
    origin: RunOrigin | None = None,
    pauses: list[Pause] | None = None,
    replay: str | None = None,
):
    """Run every step of `plan` in a Docker sandbox with `workspace` mounted at /workspace.

    `continue_run` (with a `decision`) continues a blocked run recorded earlier, from its
    first unfinished step, in the same workspace. `sandbox_block`, `state_store_block` and
    `llm_block` name blocks saved in Prefect (created or edited in the UI); without them the
    AUTODEV_* settings apply. `origin` says where the plan came from and `pauses` where it
    waited for a person before the run began (both kept with the run); `replay` names a file
    of stored model responses to use when no model is configured.
    """
    settings = load_settings()
    flow_run_id = str(runtime.flow_run.id)
    store = state_store_config(state_store_block).connect()
    if continue_run:
        session = store.get_session(continue_run)
        if session is None:
            raise BadInput(f"no run {continue_run!r} in the state store")
        run_id, plan, workspace = continue_run, session.plan, session.workspace
        store.update_session(run_id, status="running", flow_run_id=flow_run_id)
    else:
        run_id = flow_run_id
    workspace_path = Path(workspace).resolve()
    workspace_path.mkdir(parents=True, exist_ok=True)
    if not continue_run:
        origin = origin or RunOrigin()
        store.create_session(run_id, plan, str(workspace_path), flow_run_id, SessionMetadata(origin=origin, pauses=pauses or []))
        for usage in origin.usage:
            store.record_llm_usage(run_id, "decompose", usage.model, usage.tokens, usage.cost_usd)
    events = RunEvents(flow_run_id, run_id, plan.project)
    events.emit("autodev.run.started", {"steps": len(plan.steps), "workspace": str(workspace_path)})
    if sandbox_block:
        sandbox_config = DockerSandbox.load(sandbox_block)
    else:
        sandbox_config = DockerSandbox(image=settings.image, memory=settings.sandbox_memory, pids_limit=settings.sandbox_pids)
    # What the plan asks for wins over the block or the settings.
    sandbox_config = sandbox_config.model_copy(
        update={"image": plan.image or sandbox_config.image, "network": plan.network or sandbox_config.network}
    )
    try:
        with sandbox_config.open(workspace_path, run_id, flow_run_id) as sandbox, model_for(llm_block, replay) as llm:
            loop = Orchestrator(plan, run_id, workspace_path, store, sandbox, settings, events, llm)
            dashboard = loop.dashboard = RunDashboard(plan, settings.heartbeat_interval_s)
            if continue_run:
                loop.restore()
                if decision is not None:
                    loop.apply(decision)
            while True:
                while loop.run_once():
                    pass
                if not loop.progress.blocked:
                    break
                decision = loop.ask_for_decision()
                if decision is None:
                    break  # nobody decided in time: the run stays blocked and can be resumed later
                loop.apply(decision)
        store.update_session(run_id, lambda m: setattr(m, "phase", loop.progress.phase), status=loop.progress.run_status)
        session = store.get_session(run_id)
        attempts, step_states = store.attempts(run_id), store.step_states(run_id)
        report = build_report(session, attempts, step_states)
        evaluation = evaluate(session, attempts, step_states, store.llm_usage(run_id))
        store.update_session(run_id, lambda m: setattr(m, "evaluation", evaluation))
        dashboard.finish(loop.progress, report, session.metadata, evaluation)
    except BaseException:
        store.update_session(run_id, lambda m: setattr(m, "phase", "crashed"), status="failed")
        events.emit("autodev.run.finished", {"status": "failed", "reason": "crashed"})
        raise
    finally:
        store.close()
    events.emit("autodev.run.finished", {"status": report.status, "success_rate": report.success_rate})
    if report.status != "succeeded":
        failed = [s.id for s in report.steps if s.status not in ("succeeded", "skipped")]
        message = f"run {report.status}: step(s) {', '.join(failed)} did not succeed"
        return Failed(message=message, data=RunFailed(message, report))
    return report


class RunEvents:
    """Prefect events about one run; the resource is the flow run, so automations can follow it."""

    def __init__(self, flow_run_id: str, run_id: str, project: str):
        self.resource = {
            "prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
            "autodev.run_id": run_id,
            "autodev.project": project,
        }

    def emit(self, event: str, payload: dict[str, Any]) -> None:
        emit_event(event=event, resource=self.resource, payload=payload)


class LiveOutput:
    """When each running step last printed something; written by tasks, read by the loop."""

    def __init__(self) -> None:
        self.last_output_at: datetime | None = None

    def seen(self) -> None:
        self.last_output_at = utcnow()


class Orchestrator:
    """The seed's `run_once` loop, driving one run's steps through Prefect tasks."""

    def __init__(
        self,
        plan: Plan,
        run_id: str,
        workspace: Path,
        store: StoreBackend,
        sandbox: SandboxSession,
        settings: Settings,
        events: RunEvents,
        llm: LLM | None = None,
    ):
        self.plan = plan
        self.run_id = run_id
        self.workspace = workspace
        self.store = store
        self.sandbox = sandbox
        self.settings = settings
        self.events = events
        self.progress = Progress(plan)
        self.breaker = FailureBreaker(settings.breaker_threshold)
        self.stalls: dict[str, int] = {s.id: 0 for s in plan.steps}
        self.live = LiveOutput()
        self.running: dict[str, QueueEntry] = {}
        # (step, attempt, its result or its task's future): what the loop waits on
        self._done: queue.Queue[tuple[str, int, CommandResult | PrefectFuture]] = queue.Queue()
        self._last_beat = 0.0
        self.dashboard: RunDashboard | None = None
        self.insight: Insight | None = None
        self._last_insight = 0.0
        self._advised: tuple = ()  # the steps that were failed, blocked or waived when advice was last made
        self.start_head = read_git_state(workspace).head  # insights measure changes from here
        self.llm = llm
        self.redactors = {s.id: Redactor.from_env(os.environ, s.env) for s in plan.steps}
        # Kept with the run, so a run continued later still knows them.
        meta = store.get_session(run_id).metadata
        self.todo_files = meta.todo_files if meta.todo_files is not None else todo_files_in(workspace)
        if meta.todo_files is None:
            store.update_session(run_id, lambda m: setattr(m, "todo_files", self.todo_files))
        self.evidence = dict(meta.evidence)  # agent step -> the failed check that sent the run back to it
        self.feedback_rounds = meta.feedback_rounds
        self.round_start: dict[str, int] = {}  # attempts a step had when its feedback round began
        self.stale: set[str] = set()  # running steps whose result a feedback round made outdated
        self._usage: queue.Queue[tuple[str, LLMUsage]] = queue.Queue()  # model calls made by agent tasks
        self.logger = get_run_logger()
        self._unsaved: list[Callable[[SessionMetadata], None]] = []  # metadata changes _settle writes
        self._loop_status: str | None = None  # what the loop last did, for the heartbeat
        self._advice_due: Literal["due", "forced"] | None = None  # results came in since the advice was made
        self._index: tuple[Plan | None, dict[str, Step]] = (None, {})  # see _step()

    def run_once(self) -> bool:
        """Dispatch what is ready, then wait for results (or a heartbeat's worth of time).

        A result's attempt and step state are stored as soon as it arrives; the rest of what it
        changes (queue, command history, blockers, phase, heartbeat, advice) is written once per
        iteration, after the next dispatch, so the next step does not wait for that bookkeeping.
        False when nothing is running and nothing can be dispatched: the run is over or blocked.
        """
        self._dispatch_ready()
        self._settle()
        if not self.running:
            return False
        try:
            finished = self._done.get(timeout=self.settings.heartbeat_interval_s)
        except queue.Empty:
            self._beat(f"waiting for {', '.join(self.running)}")
            return True
        self._handle(*finished)
        while not self._done.empty():  # others that finished meanwhile
            self._handle(*self._done.get_nowait())
        return True

    # --- dispatch ----------------------------------------------------------------------
    def _dispatch_ready(self) -> None:
        if self.stale & self.running.keys():
            return  # a feedback round waits until the checks that ran on the old code are done
        free = self.plan.max_parallel - len(self.running)
        for step in self.progress.ready(set(self.running), limit=max(free, 0)):
            if self.progress.blocked:
                break  # a step was just left to a person: one decision at a time
            self._dispatch(step)

    def _dispatch(self, step: Step) -> None:
        agent_cli = step.agent_command or self.plan.agent_command
        if step.kind == "agent" and not agent_cli and self.llm is None:
            self._hand_to_a_person(step)
            return
        attempt = self.progress.attempts[step.id] + 1
        self.progress.attempts[step.id] = attempt
        entry = QueueEntry(queue_id=uuid.uuid4().hex[:12], step_id=step.id, attempt=attempt, dispatched_at=utcnow())
        self.running[step.id] = entry
        self._unsaved.append(lambda m: m.queue.append(entry))
        limits = self.plan.limits_for(step)
        stall_s = limits.stall_timeout_s
        if self.settings.stall_timeout_s and step.stall_timeout_s is None:
            stall_s = self.settings.stall_timeout_s
        log_path = self.workspace / ".autodev" / "logs" / self.run_id / f"{step.id}.{attempt}.log"
        capture = Capture(
            tail_bytes=self.settings.output_tail_bytes,
            live_log_bytes=self.settings.live_log_bytes,
            redactor=self.redactors[step.id],
            on_output=self.live.seen,
            on_result=lambda result, sid=step.id: self._done.put((sid, attempt, result)),
        )
        # quote(): these are handed over as they are; Prefect need not look inside them.
        if step.kind == "agent" and not agent_cli:
            future = run_agent.submit(
                step.id, attempt, quote(step), self.evidence.get(step.id), str(self.workspace), quote(self.todo_files),
                quote(self.sandbox), quote(self.llm), quote(limits.model_copy(update={"stall_timeout_s": stall_s})),
                str(log_path), quote(capture), on_usage=lambda usage, sid=step.id: self._usage.put((sid, usage)),
            )
        else:
            command = step.run if step.kind == "command" else agent_cli_command(agent_cli, step.instruction, self.evidence.get(step.id))
            request = CommandRequest(
                command=command, timeout_s=limits.timeout_s, stall_timeout_s=stall_s, env=step.env, log_path=str(log_path)
            )
            future = run_command.submit(step.id, attempt, quote(request), quote(self.sandbox), quote(capture))
        # The task's end also counts, for a task that broke before it had a result.
        future.add_done_callback(lambda f, sid=step.id: self._done.put((sid, attempt, f)))

    # --- results -----------------------------------------------------------------------
    def _step(self, step_id: str) -> Step:
        """The plan's step by id, from an index kept for the current plan (a person's decision
        may replace it), so a long plan is not searched at every result."""
        if self._index[0] is not self.plan:
            self._index = (self.plan, {s.id: s for s in self.plan.steps})
        return self._index[1][step_id]

    def _handle(self, step_id: str, attempt: int, outcome: CommandResult | PrefectFuture) -> None:
        """Act on a step's result, or on its task's end when that brought no result first."""
        entry = self.running.get(step_id)
        if entry is None or entry.attempt != attempt:
            return  # the task run ended after its result was handled
        del self.running[step_id]
        step = self._step(step_id)
        command = self.redactors[step_id].text(step.command)  # what is stored and sent
        limits = self.plan.limits_for(step)
        result = outcome if isinstance(outcome, CommandResult) else _result_of(outcome)
        self._record_usage()
        if step_id in self.stale:  # it ran on code a feedback round is replacing: kept, not counted
            self.stale.discard(step_id)
            self.store.record_attempt(StepAttempt(run_id=self.run_id, step_id=step_id, attempt=entry.attempt, command=command, result=result))
            self.logger.info("step %s ended (%s) on the code before the feedback round: it runs again", step_id, result.status)
            self._unsaved.append(lambda m: setattr(m, "queue", [q for q in m.queue if q.queue_id != entry.queue_id]))
            self._loop_status = f"set aside {step_id}"
            return
        tripped = self.breaker.record(fingerprint(step.command, result) if result.status != "succeeded" else None)
        diagnosis = diagnose(command, result, limits.stall_timeout_s) if result.status != "succeeded" else None
        if diagnosis is not None:
            self.logger.warning("step %s %s: %s", step_id, result.status, diagnosis.summary)
        if result.status == "stalled":
            self.stalls[step_id] += 1
        attempt_in_round = entry.attempt - self.round_start.get(step_id, 0)
        move = next_move(result.status, attempt_in_round, self.stalls[step_id], limits, tripped)

        skipped: list[str] = []
        if move == "finish" and result.status in FAILED_STATUSES and self._may_send_back(step):
            self._send_back(step, command, result)
            move = "retry"  # nothing is finished: the step runs again after its agent step
        elif move == "finish":
            skipped = self.progress.finish(step_id, result.status)
            if skipped:
                self.logger.warning("skipped because %s did not succeed: %s", step_id, ", ".join(skipped))
        elif move == "block":
            self.progress.finish(step_id, "blocked")
        else:
            self.logger.warning("step %s: attempt %d %s, running it again", step_id, entry.attempt, result.status)
        self.store.record_attempt(
            StepAttempt(
                run_id=self.run_id, step_id=step_id, attempt=entry.attempt, command=command, result=result,
                breaker_tripped=tripped,
            ),
            {} if move == "retry" else {step_id: self.progress.status[step_id], **dict.fromkeys(skipped, "skipped")},
        )
        # Announced once stored, so whoever an event sends to the store finds the attempt there.
        metrics.COMMANDS.labels(status=result.status).inc()
        base = {"step": step_id, "command": command, "exit_code": result.exit_code, "status": result.status}
        self.events.emit("autodev.command.finished", {**base, "duration_s": round(result.duration_s, 3)})
        if diagnosis is not None:
            metrics.COMMAND_FAILURES.inc()
            self.events.emit(
                "autodev.command.failed",
                {**base, "attempt": entry.attempt, "summary": diagnosis.summary, "suggested_action": diagnosis.suggested_action},
            )
        if result.status == "stalled":
            self.events.emit("autodev.step.stalled", {**base, "attempt": entry.attempt, "stalls": self.stalls[step_id]})
        blocker = None
        if diagnosis is not None:
            blocker = Blocker(
                step_id=step_id,
                command=command,
                exit_code=result.exit_code,
                summary=diagnosis.summary,
                suggested_action=diagnosis.suggested_action,
                kind="failure" if move != "block" else ("breaker" if tripped else "stall"),
                ts=utcnow(),
            )
            if move == "block":
                self._announce_block(blocker, result.status, diagnosis.evidence)

        def record(m: SessionMetadata) -> None:
            m.queue = [q for q in m.queue if q.queue_id != entry.queue_id]
            m.record_result(
                LastCommandResult(
                    text=result.output_tail[-2000:], exit_code=result.exit_code, ts=result.finished_at, step_id=step_id
                )
            )
            if blocker is not None:
                m.blockers.append(blocker)
            m.phase = self.progress.phase

        self._unsaved.append(record)
        self._loop_status = f"handled {step_id}: {result.status}"
        self._advice_due = "forced" if move == "block" or self.progress.finished else self._advice_due or "due"

    def _settle(self) -> None:
        """Write what the iteration's results and dispatches changed in the metadata, in one
        write with the heartbeat; then bring the advice up to date."""
        if not self._unsaved:
            return
        changes, self._unsaved = self._unsaved, []
        status, self._loop_status = self._loop_status or f"dispatched {', '.join(self.running)}", None

        def apply(m: SessionMetadata) -> None:
            for change in changes:
                change(m)

        self._beat(status, apply)
        if self._advice_due:
            self.update_insight(force=self._advice_due == "forced")
            self._advice_due = None

    def _hand_to_a_person(self, step: Step) -> None:
        """An agent step with no agent (no model, no agent CLI): block the run so a person does
        the step by hand and says so with `skip`."""
        files = ", ".join(step.files or self.todo_files) or "the files the instruction names"
        blocker = Blocker(
            step_id=step.id,
            command=step.command,
            exit_code=None,
            summary="no coding agent for this step: no model is configured (AUTODEV_LLM_MODEL) and it has no agent_command",
            suggested_action=f"do it by hand: {step.instruction.strip().rstrip('.')}; edit {files} in {self.workspace}, then skip this "
            f"step to go on (`autodev resume {self.run_id} --action skip`), or set AUTODEV_LLM_MODEL and retry",
            kind="manual",
            ts=utcnow(),
        )
        self.progress.finish(step.id, "blocked")
        self.store.set_step_states(self.run_id, {step.id: "blocked"})

        def record(m: SessionMetadata) -> None:
            m.blockers.append(blocker)
            m.phase = self.progress.phase

        self.store.update_session(self.run_id, record)
        self._announce_block(blocker, "blocked", [])
        self.update_insight(force=True)

    def _may_send_back(self, step: Step) -> bool:
        return step.feedback_to is not None and self.feedback_rounds < self.plan.max_feedback_rounds

    def _send_back(self, step: Step, command: str, result: CommandResult) -> None:
        """A failed check sends the run back to its agent step, which sees the failure's evidence."""
        target = step.feedback_to
        assert target is not None
        self.feedback_rounds += 1
        self.evidence[target] = failure_evidence(step.id, command, result.status, result.exit_code, result.output_tail)
        again = self.progress.rewind(target)
        for sid in again:
            self.round_start[sid] = self.progress.attempts[sid]
            self.stalls[sid] = 0  # each round has its own stall budget
        self.stale |= set(again) & self.running.keys()
        self.store.set_step_states(self.run_id, dict.fromkeys(again, "pending"))
        rounds, evidence = self.feedback_rounds, dict(self.evidence)

        def record(m: SessionMetadata) -> None:
            m.feedback_rounds, m.evidence = rounds, evidence

        self.store.update_session(self.run_id, record)
        self.events.emit(
            "autodev.feedback.round",
            {"step": step.id, "to": target, "round": rounds, "max_rounds": self.plan.max_feedback_rounds,
             "exit_code": result.exit_code, "rerun": again},
        )
        self.logger.warning(
            "check %s failed: back to %s with its evidence (feedback round %d of %d); again: %s",
            step.id, target, rounds, self.plan.max_feedback_rounds, ", ".join(again),
        )

    def _record_usage(self) -> None:
        while not self._usage.empty():
            step_id, usage = self._usage.get_nowait()
            self.store.record_llm_usage(self.run_id, f"agent:{step_id}", usage.model, usage.tokens, usage.cost_usd)

    def _announce_block(self, blocker: Blocker, status: str, evidence: list[str]) -> None:
        """Tell people (events, and so the automations) and the log that the run stopped at a step."""
        payload = {
            "step": blocker.step_id,
            "command": blocker.command,
            "exit_code": blocker.exit_code,
            "status": status,
            "reason": blocker.kind,
            "summary": blocker.summary,
            "suggested_action": blocker.suggested_action,
            "evidence": evidence,
        }
        if blocker.kind == "breaker":
            self.events.emit("autodev.breaker.tripped", {**payload, "threshold": self.breaker.threshold})
        self.events.emit("autodev.run.blocked", payload)
        self.logger.error(
            "run blocked (%s) at step %s: %s; try: %s", blocker.kind, blocker.step_id, blocker.summary, blocker.suggested_action
        )

    # --- human decision ----------------------------------------------------------------
    def ask_for_decision(self) -> Decision | None:
        """Pause the flow run until a person decides (Prefect UI or `autodev resume`), or None
        when AUTODEV_DECISION_TIMEOUT_S passes first."""
        blocker = self.store.get_session(self.run_id).metadata.stopping_blocker()
        assert blocker is not None  # a blocked step always leaves its blocker
        def waiting(m: SessionMetadata) -> None:
            m.phase = f"waiting for a decision on {blocker.step_id}"
            m.pauses.append(Pause(kind="decision", step_id=blocker.step_id, ts=utcnow()))

        self.store.update_session(self.run_id, waiting, status="blocked")
        description = decision_markdown(blocker, self.run_id)
        try:
            return pause_flow_run(
                wait_for_input=Decision.with_initial_data(
                    description=description, action="skip" if blocker.kind == "manual" else "retry"
                ),
                timeout=int(self.settings.decision_timeout_s),
                poll_interval=max(1, min(10, int(self.settings.decision_timeout_s // 4) or 1)),
            )
        except FlowPauseTimeout:
            back_to_running("no decision in time")
            self.logger.warning("no decision within %ss: the run stays blocked; `autodev resume %s --action ...` continues it",
                                self.settings.decision_timeout_s, self.run_id)
            return None

    def apply(self, decision: Decision) -> None:
        """Carry out a person's decision on the blocked step and record it as an intervention."""
        step_id = next(sid for sid, st in self.progress.status.items() if st == "blocked")
        intervention = Intervention(
            step_id=step_id, action=decision.action, command=decision.command, note=decision.note, ts=utcnow()
        )
        new_plan = None
        if decision.action == "retry":
            self.progress.reopen(step_id)
            self.stalls[step_id] = 0
            self.breaker = FailureBreaker(self.settings.breaker_threshold)
            if decision.command and decision.command.strip():
                # An agent step retried with a command becomes a command step.
                replaced = {"kind": "command", "run": decision.command, "instruction": None, "agent_command": None}
                steps = [s.model_copy(update=replaced) if s.id == step_id else s for s in self.plan.steps]
                self.plan = new_plan = self.plan.model_copy(update={"steps": steps})
                self.progress.plan = self.plan
            changed: dict[str, str] = {}
        elif decision.action == "skip":
            self.progress.waive(step_id)
            changed = {step_id: "skipped"}
        else:
            changed = {step_id: "failed", **dict.fromkeys(self.progress.abort(step_id), "skipped")}
        if changed:
            self.store.set_step_states(self.run_id, changed)

        def record(m: SessionMetadata) -> None:
            m.interventions.append(intervention)
            m.phase = self.progress.phase

        self.store.update_session(self.run_id, record, status="running", plan=new_plan)
        self.events.emit("autodev.run.resumed", intervention.model_dump(mode="json"))
        self.logger.info("decision on %s: %s%s", step_id, decision.action, f" with `{decision.command}`" if decision.command else "")

    def restore(self) -> None:
        """Pick up a run recorded earlier: finished steps stay finished, attempts keep counting."""
        self.progress.restore(self.store.step_states(self.run_id))
        for a in self.store.attempts(self.run_id):
            self.progress.attempts[a.step_id] = max(self.progress.attempts[a.step_id], a.attempt)
        for step_id, status in self.progress.status.items():
            if status is None:  # a continued run gives the steps still to run their retries afresh
                self.round_start[step_id] = self.progress.attempts[step_id]

    def _blockers(self) -> list[Blocker]:
        return self.store.get_session(self.run_id).metadata.blockers

    # --- insights ----------------------------------------------------------------------
    def update_insight(self, force: bool = False) -> None:
        """Bring the next-step advice up to date after a loop iteration; store it as
        `next_actions`, and tell people when it changed.

        The full computation (the insights task: the workspace's git state, and the model's
        wording when one is configured) runs at most once per heartbeat interval, and always when
        the run blocks or ends. In between, when a step failed, blocked or was waived since the
        last advice, the rules are applied to the latest progress with the git state last read,
        which costs no subprocess, task run or model call."""
        full = force or self.insight is None or time.monotonic() - self._last_insight >= self.settings.heartbeat_interval_s
        # The rules' advice changes only when a step fails, blocks or is waived (or the run ends,
        # which forces a full computation): between full computations nothing else is worth a write.
        key = tuple((sid, st) for sid, st in self.progress.status.items() if st not in (None, "succeeded"))
        if not full and key == self._advised:
            return
        self._advised = key
        statuses, attempts, blockers = dict(self.progress.status), dict(self.progress.attempts), self._blockers()
        if full:
            self._last_insight = time.monotonic()
            insight, usage = compute_insight(
                self.run_id,
                quote(self.plan),  # quote(): a large plan is costly for Prefect to look through
                quote(statuses),
                quote(attempts),
                quote(blockers),
                str(self.workspace),
                self.start_head,
                # Stored answers cannot reword live advice: a replayed run keeps the rules' wording.
                llm=quote(self.llm if self.llm is None or self.llm.model != REPLAY_MODEL else None),
            )
            if usage is not None:
                self.store.record_llm_usage(self.run_id, "insights", usage.model, usage.tokens, usage.cost_usd)
        else:
            git = GitState.model_validate(self.insight.evidence.get("git", {}))
            insight = advise(self.run_id, self.plan, statuses, attempts, blockers, git)
        # The advice quotes commands and output: mask every step's secrets in all of it.
        everything = Redactor([secret for r in self.redactors.values() for secret in r.secrets])
        insight = Insight.model_validate_json(everything.text(insight.model_dump_json()))
        previous, self.insight = self.insight, insight
        next_actions = [f"{r.action}" + (f"  ->  {r.command}" if r.command else "") for r in insight.recommendations]

        def record(m: SessionMetadata) -> None:
            m.insight = insight
            m.next_actions = next_actions

        self.store.update_session(self.run_id, record)
        if not insight_changed(previous, insight, self.settings.insight_confidence_drop):
            return
        top = insight.recommendations[0] if insight.recommendations else None
        self.events.emit(
            "autodev.insight.changed",
            {
                "summary": top.reason if top else "",
                "suggested_action": "; ".join(next_actions),
                "recommendations": [r.model_dump() for r in insight.recommendations],
                "confidence": insight.confidence,
                "previous_confidence": previous.confidence if previous else None,
            },
        )
        create_markdown_artifact(
            key=f"insights-{artifact_key(self.plan.project)}",
            markdown=insight_markdown(insight),
            description=f"{self.plan.project}: what to do next",
        )

    # --- heartbeat ---------------------------------------------------------------------
    def _beat(self, loop_status: str, also=None) -> None:
        """Record `orchestrator_heartbeat` (and the latest output time) in the metadata, with any
        other change `also` makes in the same write; emit `autodev.heartbeat` at most once per
        heartbeat interval."""
        now = utcnow()
        last_output = self.live.last_output_at

        def update(m: SessionMetadata) -> None:
            if also:
                also(m)
            m.orchestrator_heartbeat = Heartbeat(ts=now, loop_status=loop_status)
            if last_output and (m.last_output_at is None or last_output > m.last_output_at):
                m.last_output_at = last_output

        self.store.update_session(self.run_id, update)
        if self.dashboard:
            self.dashboard.update(self.progress, set(self.running))
        if time.monotonic() - self._last_beat >= self.settings.heartbeat_interval_s:
            self._last_beat = time.monotonic()
            self.events.emit("autodev.heartbeat", {"loop_status": loop_status, "running": list(self.running)})


def back_to_running(message: str) -> None:
    """After a pause timed out: Prefect would fail the flow run as "never resumed"; take it back
    to Running so the run ends with its own state, message and report."""
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(runtime.flow_run.id, Running(message=message), force=True)


def _result_of(future: PrefectFuture) -> CommandResult:
    """The CommandResult a run_command task returned, whether its state is Completed or Failed."""
    outcome = future.result(raise_on_failure=False)
    if isinstance(outcome, CommandResult):
        return outcome
    if isinstance(outcome, CommandFailed):
        return outcome.result
    # The task itself broke (not the command): keep the evidence, the exit code is unknown.
    now = utcnow()
    return CommandResult(
        status="failed",
        exit_code=None,
        exit_reason=f"task crashed: {outcome!r}"[:500],
        started_at=now,
        finished_at=now,
    )


def insight_markdown(insight: Insight) -> str:
    lines = [f"# Next steps (confidence {insight.confidence:.2f})", ""]
    for i, r in enumerate(insight.recommendations, 1):
        lines.append(f"{i}. **{r.action}**  \n   why: {r.reason}" + (f"  \n   run: `{r.command}`" if r.command else ""))
    steps = insight.evidence.get("steps", {})
    git = insight.evidence.get("git", {})
    lines += [
        "",
        f"Evidence: {steps.get('succeeded', 0)}/{steps.get('total', 0)} steps succeeded; "
        f"failed {steps.get('failed') or 'none'}; blocked {steps.get('blocked') or 'none'}; "
        + (
            f"git {git.get('branch')} @ {str(git.get('head'))[:8]}, {len(git.get('dirty_files', []))} changed, "
            f"{len(git.get('untracked_files', []))} untracked, {len(git.get('conflicts', []))} conflicts, "
            f"{git.get('commits_since_start', 0)} commit(s) this run"
            if git.get("is_repo")
            else "the workspace is not a git repository"
        ),
    ]
    return "\n".join(lines) + "\n"


def decision_markdown(blocker: Blocker, run_id: str) -> str:
    code = "unknown" if blocker.exit_code is None else blocker.exit_code
    return (
        f"## Run blocked at step `{blocker.step_id}` ({blocker.kind})\n\n"
        f"**Command:** `{blocker.command}`  \n**Exit code:** {code}\n\n"
        f"**What happened:** {blocker.summary}\n\n**Suggested action:** {blocker.suggested_action}\n\n"
        "Choose *retry* (optionally with an edited command), *skip* (go on without this step) or *abort*. "
        f"From a shell: `autodev resume {run_id} --action retry|skip|abort [--command CMD]`."
    )
