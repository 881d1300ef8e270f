"""The plan flow: a validated plan run as a Prefect flow, one task per command, in one sandbox.

The flow body reads like the process: open the run's session, put the run together (its
engine, its sandbox behind a Prefect executor, the recorder, the advisor, the pause for a
person), run the loop until no step can run, report. The loop (`autodev/core/engine/loop.py`)
hands each attempt's end to the engine, which decides what it means; the recorder
(`recorder.py`) stores and announces the engine's answers.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime
from pathlib import Path

import git
from prefect import flow, get_run_logger
from prefect import runtime as prefect_runtime
from prefect.states import Failed, State

from autodev.blocks.git_branch import publish_branch
from autodev.blocks.git_merge import lane_clone
from autodev.blocks.git_state import branch_changes, git_refusal
from autodev.blocks.sandbox.leftovers import clear_leftovers, remove_run_containers
from autodev.blocks.secrets import resolve_secrets
from autodev.blocks.store import Store
from autodev.core.engine.effects import Effects, Policy
from autodev.core.engine.inputs import Beat, BranchEnded, Finish, Restore
from autodev.core.engine.loop import RunLoop
from autodev.core.engine.machine import RunEngine
from autodev.core.engine.state import RunState
from autodev.core.errors import RunFailed
from autodev.core.models import Plan, RepositoryReport
from autodev.core.output import redact_file
from autodev.core.plan import load_plan
from autodev.core.recovery import LEASE_BEATS, owner_here
from autodev.core.report import RunReport
from autodev.core.scaffold import todo_files_in
from autodev.core.secrets import LiftedSecrets, lift_env_secrets, secret_names
from autodev.core.session import Decision, Lease, Pause, RunOrigin, SessionMetadata, SessionRecord
from autodev.flows.advice import RunAdvisor
from autodev.flows.dashboard import RunDashboard
from autodev.flows.decision import PausedForDecision
from autodev.flows.executor import PrefectExecutor
from autodev.flows.recorder import RunEvents, StoreRecorder, mark_cancelled, open_session
from autodev.flows.runtime import runtime
from autodev.flows.slots import project_slot


def _flow_run_name() -> str:
    plan = prefect_runtime.flow_run.parameters.get("plan")
    if isinstance(plan, str):  # a plan file's path
        project = Path(plan).stem
    else:
        project = str(plan.get("project") if isinstance(plan, dict) else getattr(plan, "project", "plan"))
    return f"{project}-{datetime.now():%Y%m%d-%H%M%S}"


def _on_cancellation(flow, flow_run, state) -> None:
    """Cancelled from the UI or `prefect flow-run cancel`: the worker stops the flow's process,
    and this hook (run by the worker) removes the run's sandbox and records the run as failed."""
    remove_run_containers(str(flow_run.id), label="autodev.flow_run_id")
    store = runtime().store(flow_run.parameters.get("state_store_block"))
    try:
        mark_cancelled(store, str(flow_run.id))
    finally:
        store.close()


@flow(name="autodev-plan", flow_run_name=_flow_run_name, persist_result=False, on_cancellation=[_on_cancellation])
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
) -> RunReport | State:
    """Run every step of `plan` (or of the plan file at that path, as this process sees the file
    system) in a Docker sandbox with `workspace` mounted at /workspace.

    `continue_run` (with a `decision`) continues a run recorded earlier, in the same workspace.
    `sandbox_block`, `state_store_block` and `llm_block` name blocks saved in Prefect (the UI);
    without them the AUTODEV_* settings apply. `origin` says where the plan came from and
    `pauses` where it waited for a person before the run began; `replay` names stored model
    responses to use when no model is configured; `repository` says the workspace is a
    worktree of a repository that exists (a commit per agent round, its branch in the report).
    """
    lifted = secrets_of(load_plan(plan) if isinstance(plan, str) else plan)
    workspace_path = Path(workspace).resolve()
    workspace_path.mkdir(parents=True, exist_ok=True)
    doc = SessionMetadata(origin=origin or RunOrigin(), pauses=pauses or [], todo_files=todo_files_in(workspace_path), repository=repository)
    store = runtime().store(state_store_block)
    try:
        recorder, session = _open(store, lifted.plan, workspace_path, doc, continue_run)
        try:
            with recorder.keep_alive():
                report = PlanRun(session, recorder, lifted.values).run(continue_run is not None, decision, sandbox_block, llm_block, replay)
        except BaseException as exc:
            recorder.crashed(exc)
            raise
    finally:
        store.close()
    return outcome_of(report)


def outcome_of(report: RunReport) -> RunReport | State:
    """The flow run's end: the report; a Failed state carrying it when a step did not succeed
    (Prefect 3 does not fail a flow for its failed tasks)."""
    if report.status == "succeeded":
        return report
    failed = [s.id for s in report.steps if s.status not in ("succeeded", "skipped")]
    message = f"run {report.status}: step(s) {', '.join(failed)} did not succeed"
    return Failed(message=message, data=RunFailed(message, report))


def _open(store: Store, plan: Plan, workspace: Path, doc: SessionMetadata, continue_run: str | None) -> tuple[StoreRecorder, SessionRecord]:
    """The run's session, held by this process, and the recorder that writes it."""
    flow_run_id, interval_s = str(prefect_runtime.flow_run.id), runtime().settings.heartbeat_interval_s
    lease = Lease(owner=owner_here(flow_run_id), seconds=LEASE_BEATS * interval_s)
    session = open_session(store, plan, workspace, flow_run_id, lease, doc, continue_run)
    events = RunEvents(flow_run_id, session.run_id, plan.project)
    return StoreRecorder(store, session.run_id, events, get_run_logger(), interval_s, lease), session


class PlanRun:
    """One run put together: its engine over its recorded state, a Prefect executor in its
    sandbox, the recorder, the advisor and the pause for a person, driven by the loop."""

    def __init__(self, session: SessionRecord, recorder: StoreRecorder, secrets: dict[str, str]):
        self.session = session
        self.recorder = recorder
        self.secrets = secrets
        self.settings = runtime().settings
        self.workspace = Path(session.workspace)

    def run(self, resumed: bool, decision: Decision | None, sandbox_block: str | None, llm_block: str | None, replay: str | None) -> RunReport:
        session, settings, recorder = self.session, self.settings, self.recorder
        with runtime().model(llm_block, replay, recorder.logger.info) as llm:
            recorder.started(len(session.plan.steps), session.workspace)
            engine = self.engine(has_model=llm is not None)
            recorder.dashboard = RunDashboard(session.plan, settings.heartbeat_interval_s)
            restore = self.restore(engine) if resumed else None  # what a dead orchestrator left is settled first
            sandbox = runtime().sandbox(sandbox_block, session.plan)
            with project_slot(session.plan.project, recorder.logger.info, lambda status: self.beat(engine, status), settings.heartbeat_interval_s):
                executor = PrefectExecutor(
                    lambda workspace: sandbox.open(workspace, session.run_id, str(prefect_runtime.flow_run.id)), self.workspace, llm,
                    settings.output_tail_bytes, settings.live_log_bytes,
                )  # fmt: skip
                advisor = RunAdvisor(session.run_id, self.workspace, llm, settings.heartbeat_interval_s)
                loop = RunLoop(engine, executor, recorder, PausedForDecision(recorder, settings.decision_timeout_s), advisor, settings.heartbeat_interval_s)
                try:
                    loop.run(restore, decision)
                finally:
                    executor.close()
            if session.metadata.repository is not None:
                unmerged = [s.merges for s in session.plan.steps if s.merges and engine.progress.status[s.id] != "succeeded"]
                summary = branch_summary(session.metadata.repository, self.workspace, unmerged)
                loop.take(engine.handle(BranchEnded(repository=summary)))
            return recorder.finish(engine.handle(Finish()), engine)

    def engine(self, has_model: bool) -> RunEngine:
        s, session = self.settings, self.session
        policy = Policy(breaker_threshold=s.breaker_threshold, stall_timeout_s=s.stall_timeout_s, has_model=has_model,
                        confidence_drop=s.insight_confidence_drop, limit_wait_max_s=s.limit_wait_max_s)  # fmt: skip
        state = RunState.begin(session.run_id, session.workspace, session.plan, session.metadata)
        return RunEngine(session.plan, state, policy, environ=os.environ, secrets=self.secrets)

    def restore(self, engine: RunEngine) -> Restore:
        """The run as recorded, and what its dead orchestrator left: its commands killed, its
        sandboxes removed, the ends of the commands that finished after it read back."""
        store, run_id = self.recorder.store, self.session.run_id
        states, attempts = store.attempts.states(run_id), store.attempts.of(run_id)
        recorded = {(a.step_id, a.attempt) for a in attempts}
        lanes = {s.id: lane_clone(self.workspace, s.worktree) for s in self.session.plan.steps if s.worktree}
        left = clear_leftovers(run_id, self.workspace, self.session.metadata.queue, recorded, self.settings.output_tail_bytes, lanes)
        for attempt in left:  # the dead orchestrator could not mask their logs at their end
            if attempt.log_path and attempt.step_id in engine.redactors:
                redact_file(Path(attempt.log_path), engine.redactors[attempt.step_id])
        return Restore(step_states=states, attempts=attempts, left=left)

    def beat(self, engine: RunEngine, status: str) -> None:
        """Only the heartbeat, saying what the run waits for (before its loop beats itself)."""
        engine.handle(Beat(loop_status=status))
        self.recorder.record(Effects(), engine.state)


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


def secrets_of(plan: Plan) -> LiftedSecrets:
    """The plan with no secret value in it (what is stored), and the secrets' values by name."""
    lifted = lift_env_secrets(plan)
    values = resolve_secrets(secret_names(lifted.plan), {**os.environ, **lifted.values})
    return LiftedSecrets(plan=lifted.plan, values=values)


def branch_summary(repository: RepositoryReport, worktree: Path, unmerged: list[str] | None = None) -> RepositoryReport:
    """The run's branch as it ends, brought into the repository with the branches of the tasks
    left unmerged (`unmerged`: their worktrees), and its commits and what they change (shown in
    the report). A branch git refuses to bring in stays in its clone."""
    clones = [(worktree, repository.branch)] + [(c, f"{repository.branch}-{lane}") for lane in unmerged or [] if (c := lane_clone(worktree, lane)).is_dir()]
    for clone, branch in clones:
        try:
            publish_branch(clone, Path(repository.repository), branch)
        except (git.GitCommandError, OSError) as exc:
            get_run_logger().error("could not bring branch %s into %s (%s); it stays in %s", branch,
                                   repository.repository, git_refusal(exc), clone)  # fmt: skip
    try:
        changes = branch_changes(worktree, repository.base)
    except git.InvalidGitRepositoryError as exc:
        get_run_logger().error("cannot read branch %s: %s", repository.branch, exc)
        return repository
    return repository.model_copy(update={"commits": changes.commits, "diff_stat": changes.diff_stat})
