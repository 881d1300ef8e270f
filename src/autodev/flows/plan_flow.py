"""The plan flow: a validated plan run as a Prefect flow, one task per command, in one sandbox.

The flow body reads like the process: open the run's session and its sandbox, loop until no
step can run (pausing for a person when the run is blocked and nothing else can run), report.
The loop (`Loop`) does what takes time: it starts each step the run engine dispatches as a
Prefect task, waits, and hands each result to the engine (`src/autodev/core/run_engine.py`), which
decides what it means; the recorder (`src/autodev/flows/recorder.py`) stores, announces and logs each of
the engine's outcomes, in that order.
"""

from __future__ import annotations

import json
import os
import queue
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from prefect import flow, get_run_logger, runtime
from prefect.futures import PrefectFuture
from prefect.states import Failed
from prefect.utilities.annotations import quote

from autodev.blocks.docker_sandbox import status_dir
from autodev.blocks.git_state import RoundNotCommitted, branch_changes, change_digest, commit_round
from autodev.blocks.llm import LLM
from autodev.blocks.sandbox import SandboxSession
from autodev.blocks.sandbox_leftovers import attempt_key, clear_leftovers, exit_path, remove_run_containers
from autodev.blocks.secrets import resolve_secrets
from autodev.core.agents import AgentStream
from autodev.core.errors import CommandFailed, RunFailed
from autodev.core.models import CommandRequest, CommandResult, Plan, RepositoryReport, utcnow
from autodev.core.outcomes import Dispatch, Outcome, Rules
from autodev.core.output import redact_file
from autodev.core.plan import load_plan
from autodev.core.policy import judge
from autodev.core.progress import ProgressMeter
from autodev.core.recovery import LEASE_BEATS, owner_here
from autodev.core.run_engine import RunEngine
from autodev.core.scaffold import todo_files_in
from autodev.core.secrets import lift_env_secrets, secret_names
from autodev.core.session import Decision, Lease, LLMCall, MetadataChanges, Pause, RunOrigin, SessionMetadata, SessionRecord
from autodev.core.settings import Settings, load_settings
from autodev.flows.advice import Advisor
from autodev.flows.dashboard import RunDashboard
from autodev.flows.decision import ask_for_decision
from autodev.flows.recorder import Recorder, RunEvents, mark_cancelled, open_session
from autodev.flows.resources import model_for, project_slot, sandbox_config, state_store_config
from autodev.tasks.agent import run_agent
from autodev.tasks.run_command import Capture, run_command


def _flow_run_name() -> str:
    plan = runtime.flow_run.parameters.get("plan")
    if isinstance(plan, str):  # a plan file's path
        project = Path(plan).stem
    else:
        project = plan.get("project") if isinstance(plan, dict) else getattr(plan, "project", "plan")
    return f"{project}-{datetime.now():%Y%m%d-%H%M%S}"


def _on_cancellation(flow, flow_run, state) -> None:
    """Cancelled from the UI or `prefect flow-run cancel`: the worker stops the flow's process,
    and this hook (run by the worker) removes the run's sandbox and records the run as failed."""
    remove_run_containers(str(flow_run.id), label="autodev.flow_run_id")
    store = state_store_config(flow_run.parameters.get("state_store_block")).connect()
    try:
        mark_cancelled(store, str(flow_run.id))
    finally:
        store.close()


@flow(
    name="autodev-plan",
    flow_run_name=_flow_run_name,
    persist_result=False,
    on_cancellation=[_on_cancellation],
)
def run_plan(
    plan: Plan | str,
    workspace: str,
    continue_run: str | None = None,
    decision: Decision | None = None,
    sandbox_block: str | None = None,
    state_store_block: str | None = None,
    llm_block: str | None = None,
    origin: RunOrigin | None = None,
    pauses: list[Pause] | None = None,
    replay: str | None = None,
    repository: RepositoryReport | None = None,
):
    """Run every step of `plan` (or of the plan file at that path, as this process sees the file
    system) in a Docker sandbox with `workspace` mounted at /workspace.

    `continue_run` (with a `decision`) continues a blocked run recorded earlier, from its
    first unfinished step, in the same workspace. `sandbox_block`, `state_store_block` and
    `llm_block` name blocks saved in Prefect (created or edited in the UI); without them the
    AUTODEV_* settings apply. `origin` says where the plan came from and `pauses` where it
    waited for a person before the run began (both kept with the run); `replay` names a file
    of stored model responses to use when no model is configured. `repository` says the
    workspace is a worktree of a repository that exists (its branch gets a commit per agent
    round, and the run's report shows the branch's changes).
    """
    settings, flow_run_id, workspace_path = load_settings(), str(runtime.flow_run.id), Path(workspace).resolve()
    plan, secrets = secrets_of(load_plan(plan) if isinstance(plan, str) else plan)
    store = state_store_config(state_store_block).connect()
    try:
        workspace_path.mkdir(parents=True, exist_ok=True)
        metadata = SessionMetadata(
            origin=origin or RunOrigin(), pauses=pauses or [], todo_files=todo_files_in(workspace_path), repository=repository
        )
        lease = Lease(owner=owner_here(flow_run_id), seconds=LEASE_BEATS * settings.heartbeat_interval_s)
        session = open_session(store, plan, workspace_path, flow_run_id, lease, metadata, continue_run)
        events = RunEvents(flow_run_id, session.run_id, plan.project)
        recorder = Recorder(store, session.run_id, events, get_run_logger(), settings.heartbeat_interval_s, lease)
        try:
            with recorder.keep_alive(), model_for(llm_block, replay) as llm:
                recorder.started(len(session.plan.steps), session.workspace)
                engine = RunEngine(session.plan, session.run_id, session.workspace, _rules(settings, llm), session.metadata, os.environ, secrets)
                recorder.dashboard = RunDashboard(session.plan, settings.heartbeat_interval_s)
                advisor = Advisor(session.run_id, Path(session.workspace), llm, settings.heartbeat_interval_s, settings.insight_confidence_drop)
                sandbox = sandbox_config(sandbox_block, session.plan, settings)
                loop = Loop(engine, recorder, advisor, lambda: sandbox.open(Path(session.workspace), session.run_id, flow_run_id), llm, settings)
                with project_slot(session.plan.project, recorder.logger.info, recorder.beat, settings.heartbeat_interval_s):
                    loop.run(resumed=session if continue_run else None, decision=decision)
                if session.metadata.repository is not None:
                    recorder.record(branch_outcome(session.metadata.repository, Path(session.workspace)))
                report = recorder.finish(engine)
        except BaseException as exc:
            recorder.crashed(exc)
            raise
    finally:
        store.close()
    if report.status != "succeeded":
        failed = [s.id for s in report.steps if s.status not in ("succeeded", "skipped")]
        message = f"run {report.status}: step(s) {', '.join(failed)} did not succeed"
        return Failed(message=message, data=RunFailed(message, report))
    return report


# Prefect refuses flow-run parameters over 512 KiB serialized; this leaves room for the others.
PLAN_PARAMETER_BYTES = 400_000


def plan_parameter(plan: Plan, workspace: Path) -> dict | str:
    """The plan as its flow run's parameter: only what differs from the defaults (a 10,000-step
    plan of short commands is ~0.3 MB so, 3.4 MB in full); a plan bigger than Prefect takes goes
    as the path of a copy written in the workspace's `.autodev/plans/` (no secret is in it: the
    plan has been through lift_env_secrets)."""
    compact = plan.model_dump(mode="json", exclude_defaults=True)
    text = json.dumps(compact)
    if len(text) <= PLAN_PARAMETER_BYTES:
        return compact
    path = workspace.resolve() / ".autodev" / "plans" / f"{plan.project}-{uuid.uuid4().hex[:8]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def secrets_of(plan: Plan) -> tuple[Plan, dict[str, str]]:
    """The plan with no secret value in it (what is stored), and the secrets' values by name."""
    lifted = lift_env_secrets(plan)
    return lifted.plan, resolve_secrets(secret_names(lifted.plan), {**os.environ, **lifted.values})


def progress_meter(d: Dispatch) -> ProgressMeter | None:
    """What resets the attempt's stall clock: new output (the default), or any output."""
    if d.limits.stall_clock == "output":
        return None
    return ProgressMeter(AgentStream(d.agent_stream) if d.agent_stream else None)


def branch_outcome(repository: RepositoryReport, worktree: Path) -> Outcome:
    """The run's branch as it ends: its commits and what they change (shown in the report)."""
    changes = branch_changes(worktree, repository.base)
    ended = repository.model_copy(update={"commits": changes.commits, "diff_stat": changes.diff_stat})
    return Outcome(changes=MetadataChanges(repository=ended))


def _rules(settings: Settings, llm: LLM | None) -> Rules:
    return Rules(breaker_threshold=settings.breaker_threshold, stall_timeout_s=settings.stall_timeout_s, has_model=llm is not None)


@dataclass(frozen=True)
class Finished:
    """A step attempt's end, as it reaches the loop: its result, or its task's future."""

    step_id: str
    attempt: int
    outcome: CommandResult | PrefectFuture


class LiveOutput:
    """When each running step last printed something; written by tasks, read by the loop."""

    def __init__(self) -> None:
        self.last_output_at: datetime | None = None

    def seen(self) -> None:
        self.last_output_at = utcnow()


class Loop:
    """The seed's `run_once` loop, driving the engine's dispatches through Prefect tasks."""

    def __init__(
        self,
        engine: RunEngine,
        recorder: Recorder,
        advisor: Advisor,
        open_sandbox: Callable[[], SandboxSession],
        llm: LLM | None,
        settings: Settings,
    ):
        self.engine = engine
        self.recorder = recorder
        self.advisor = advisor
        self.open_sandbox = open_sandbox
        self.sandbox: SandboxSession | None = None
        self._sandbox_lost = False  # a result said the sandbox went away: open a new one before the next step
        self.llm = llm
        self.settings = settings
        self.live = LiveOutput()
        self._done: queue.Queue[Finished] = queue.Queue()
        self._calls: queue.Queue[LLMCall] = queue.Queue()  # model calls made by agent tasks
        self._loop_status: str | None = None  # what the loop last did, for the heartbeat
        self._advice: str | None = None  # results came in since the advice was made (forced: in full)
        self._failed_since_write = False  # an attempt failed since the last metadata write

    def run(self, resumed: SessionRecord | None = None, decision: Decision | None = None) -> None:
        """Until no step can run, in the run's sandbox; a blocked run with nothing else to do
        waits for a person. A `resumed` run first settles what its previous orchestrator left
        (its sandboxes removed, its commands' ends recovered), then takes `decision`."""
        if resumed is not None:
            store = self.recorder.store
            states, attempts = store.step_states(resumed.run_id), store.attempts(resumed.run_id)
            recorded = {(a.step_id, a.attempt) for a in attempts}
            left = clear_leftovers(resumed.run_id, Path(resumed.workspace), resumed.metadata.queue, recorded, self.settings.output_tail_bytes)
            for attempt in left:  # the dead orchestrator could not mask their logs at their end
                redactor = self.engine.redactors.get(attempt.step_id)
                if attempt.log_path and redactor:
                    redact_file(Path(attempt.log_path), redactor)
            for outcome in self.engine.restore(states, attempts, left):
                self.take(outcome)
        self.sandbox = self.open_sandbox()
        try:
            if decision is not None:
                self.apply(decision)
            while True:
                while self.run_once():
                    pass
                if not self.engine.waits_for_a_person:
                    return
                decision = self.ask_for_decision()
                if decision is None:
                    return  # nobody decided in time: the run stays blocked and can be resumed later
                self.apply(decision)
        finally:
            self.sandbox.close()

    def run_once(self) -> bool:
        """Dispatch what is ready, then wait for results (or a heartbeat's worth of time).

        A result's attempt and step states are stored as soon as it arrives; the rest of what it
        changes (queue, command history, blockers, phase, heartbeat, advice) is written once per
        iteration, after the next dispatch, so the next step does not wait for that bookkeeping.
        A failed attempt is the exception: the advice it changes is written before the next
        dispatch, so the next step (an agent, a person) finds it.
        False when nothing is running and nothing can be dispatched: the run is over or blocked.
        """
        if self._failed_since_write:
            self._settle()
        self.take(self.engine.dispatch())
        self._settle()
        if not self.engine.running:
            return False
        try:
            finished = self._done.get(timeout=self.settings.heartbeat_interval_s)
        except queue.Empty:
            self.recorder.flush(f"waiting for {', '.join(self.engine.running)}", self.engine, self.live.last_output_at)
            return True
        self._handle(finished)
        while not self._done.empty():  # others that finished meanwhile
            self._handle(self._done.get_nowait())
        return True

    def take(self, outcome: Outcome) -> None:
        """Record an outcome of the engine and start what it dispatched."""
        self.recorder.record(outcome)
        for dispatch in outcome.started:
            self._submit(dispatch)
        self._loop_status = outcome.loop_status or self._loop_status
        if outcome.attempt is not None and outcome.attempt.result.status != "succeeded":
            self._failed_since_write = True
        if outcome.advice:
            self._advice = "forced" if "forced" in (outcome.advice, self._advice) else "due"

    def _submit(self, d: Dispatch) -> None:
        if self._sandbox_lost:  # the engine came back (a person retried): a new sandbox for the run
            self.sandbox.close()
            self.sandbox, self._sandbox_lost = self.open_sandbox(), False
        workspace, run_id = Path(self.engine.workspace), self.engine.run_id
        request = CommandRequest(
            command=d.command or "",  # the built-in agent's command applies the edits it gets
            timeout_s=d.limits.timeout_s,
            stall_timeout_s=d.limits.stall_timeout_s,
            env=d.env,
            log_path=str(status_dir(workspace, run_id) / d.log_name),
            key=attempt_key(run_id, d.step.id, d.attempt),
            exit_path=str(exit_path(workspace, run_id, d.step.id, d.attempt)),
        )
        Path(request.exit_path).unlink(missing_ok=True)  # only this attempt's end may be read from it
        capture = Capture(
            tail_bytes=self.settings.output_tail_bytes,
            live_log_bytes=self.settings.live_log_bytes,
            redactor=d.redactor,
            on_output=self.live.seen,
            on_result=lambda result, sid=d.step.id, n=d.attempt: self._done.put(Finished(sid, n, result)),
            judge=lambda result, step=d.step: judge(step, result, self.engine.outputs.get(step.baseline or "", "")),
            progress=progress_meter(d),
        )
        # quote(): these are handed over as they are; Prefect need not look inside them.
        if d.command is None:  # the built-in agent
            future = run_agent.submit(
                d.step.id, d.attempt, quote(d.step), d.evidence, self.engine.workspace, quote(self.engine.todo_files),
                quote(self.sandbox), quote(self.llm), quote(request), quote(capture),
                on_usage=lambda usage, sid=d.step.id: self._calls.put(LLMCall(purpose=f"agent:{sid}", **usage.model_dump())),
            )
        else:
            future = run_command.submit(d.step.id, d.attempt, quote(request), quote(self.sandbox), quote(capture))
        # The task's end also counts, for a task that broke before it had a result.
        future.add_done_callback(lambda f, sid=d.step.id, n=d.attempt: self._done.put(Finished(sid, n, f)))

    def _handle(self, finished: Finished) -> None:
        """Hand a step's result (or its task's end) to the engine, and its outcome to the recorder."""
        running = self.engine.running.get(finished.step_id)
        if running is None or running.attempt != finished.attempt:
            return  # the task run ended after its result was handled: nothing to wait for
        result = finished.outcome if isinstance(finished.outcome, CommandResult) else _result_of(finished.outcome)
        self._sandbox_lost = self._sandbox_lost or result.sandbox_lost
        digest = self._commit_round(finished, result)
        if digest is not None:
            result = result.model_copy(update={"round_digest": digest})
        calls = []
        while not self._calls.empty():
            calls.append(self._calls.get_nowait())
        if calls:  # the built-in agent's model calls: recorded, and counted against the budgets
            spent = Outcome(model_calls=calls)
            self.engine.spend(calls, spent)
            self.recorder.record(spent)
        outcome = self.engine.on_result(finished.step_id, finished.attempt, result)
        if outcome is not None:
            self.take(outcome)

    def _commit_round(self, finished: Finished, result: CommandResult) -> str | None:
        """An agent round that succeeded in a git workspace is a commit of its own (the built-in
        agent commits in the sandbox; an agent CLI leaves that to this). The digest of what the
        round changed ("" for nothing), None when there is no round to commit."""
        workspace = Path(self.engine.workspace)
        if result.status != "succeeded":
            return None
        if self.engine.plan.step(finished.step_id).kind != "agent" or not (workspace / ".git").exists():
            return None
        try:
            sha = commit_round(workspace, f"autodev: {finished.step_id} (attempt {finished.attempt})")
        except RoundNotCommitted as exc:
            self.recorder.logger.warning(
                "could not commit what %s changed (git: %s); the changes stay in the workspace for the next commit",
                finished.step_id, exc,
            )
            return None
        if sha:
            self.recorder.logger.info("committed what %s changed: %s", finished.step_id, sha[:8])
            return change_digest(workspace, sha)
        if result.agent is not None:  # an agent CLI that said it was done, having changed nothing
            self.recorder.logger.warning("agent step %s changed no file in the workspace", finished.step_id)
            return ""
        return None  # the built-in agent committed in the sandbox

    def _settle(self) -> None:
        """Bring the advice up to date when results came in, then write what the iteration
        changed in the metadata, in one write with the heartbeat."""
        if self._advice:
            advice = self.advisor.update(self.engine, force=self._advice == "forced")
            self._advice = None
            if advice is not None:
                self.recorder.record(advice)
        self._failed_since_write = False
        if self.recorder.has_news:
            status, self._loop_status = self._loop_status or f"dispatched {', '.join(self.engine.running)}", None
            self.recorder.flush(status, self.engine, self.live.last_output_at)

    # --- a person's decision -----------------------------------------------------------
    def ask_for_decision(self) -> Decision | None:
        """Pause the flow run until a person decides, or None when AUTODEV_DECISION_TIMEOUT_S passes first."""
        blockers = self.engine.waiting_on()
        assert blockers  # a blocked step always leaves its blocker
        self.take(self.engine.pause())
        self._settle()
        self.recorder.paused = True
        try:
            return ask_for_decision(blockers, self.engine.run_id, self.settings.decision_timeout_s, self.recorder.logger)
        finally:
            self.recorder.paused = False

    def apply(self, decision: Decision) -> None:
        """Carry out a person's decision, and record it at once."""
        self.take(self.engine.decide(decision))
        self._settle()


def _result_of(future: PrefectFuture) -> CommandResult:
    """The CommandResult a step task returned, whether its state is Completed or Failed."""
    outcome = future.result(raise_on_failure=False)
    if isinstance(outcome, CommandResult):
        return outcome
    if isinstance(outcome, CommandFailed):
        return outcome.result
    # The task itself broke (not the command): keep the evidence, the exit code is unknown.
    now = utcnow()
    return CommandResult(
        status="failed", exit_code=None, exit_reason=f"task crashed: {outcome!r}"[:500], started_at=now, finished_at=now
    )
