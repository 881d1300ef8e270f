"""The run report (the contract's `--json` object), rebuilt from what the state store holds.

Built the same way for a run that just finished and for `autodev status` hours later: each step's
state and last attempt, the blocked steps with what stopped them and the steps that wait on
them, and whether the run's orchestrator is gone (then the advice says how to continue it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field

from autodev.core.commands import StepAttempt
from autodev.core.models import Blocker, Plan, RepositoryReport, RunStatus, StepStatus, TaskReport, utcnow
from autodev.core.recovery import heartbeat_delay_s, orchestrator_gone
from autodev.core.session import LLMCall, SessionRecord


class StepReport(BaseModel):
    id: str
    command: str
    status: StepStatus
    exit_code: int | None
    duration_s: float
    attempts: int
    output_tail: str
    waits_for: list[str] = Field(default_factory=list)  # the blocked steps this one waits on (upstream)
    waiting_until: datetime | None = None  # a step waiting for its provider's limit: when it runs again


class RunReport(BaseModel):
    """The contract's `--json` object."""

    run_id: str
    status: RunStatus
    steps: list[StepReport]
    success_rate: float
    interventions: int = 0
    next_actions: list[str] = Field(default_factory=list)
    blockers: list[Blocker] = Field(default_factory=list)  # what stopped each blocked step, in plan order
    tasks: list[TaskReport] = Field(default_factory=list)  # each task's outcome, when the plan names tasks
    repository: RepositoryReport | None = None  # set for a run on a repository that exists
    orchestrator_gone: bool = False  # marked running or blocked, but the process that ran it died


def build_report(
    session: SessionRecord, attempts: list[StepAttempt], step_states: dict[str, str], now: datetime | None = None,
    calls: list[LLMCall] | None = None,
) -> RunReport:  # fmt: skip
    """The report of the run as the store has it: its steps' attempts and states, and the model
    calls it made (what each task cost)."""
    now = now or utcnow()
    last = {a.step_id: a for a in attempts}  # attempts come oldest first
    blocked = [s.id for s in session.plan.steps if step_states.get(s.id) == "blocked"]
    steps = _steps(session, last, step_states, _waits_for(session.plan, set(blocked), step_states))
    succeeded = sum(s.status == "succeeded" for s in steps)
    newest: dict[str, Blocker] = {b.step_id: b for b in session.metadata.blockers if b.stops_the_run}
    gone = orchestrator_gone(session, now)
    return RunReport(
        run_id=session.run_id,
        status=session.status,
        steps=steps,
        success_rate=round(succeeded / len(steps), 4),
        interventions=len(session.metadata.interventions),
        next_actions=_next_actions(session, gone, now),
        blockers=[newest[sid] for sid in blocked if sid in newest],
        orchestrator_gone=gone,
        tasks=_tasks(session, {s.id: s.status for s in steps}, attempts, calls or []),
        repository=_repository(session, last),
    )


def _steps(
    session: SessionRecord, last: dict[str, StepAttempt], states: dict[str, str], waits: dict[str, list[str]]
) -> list[StepReport]:
    """Each step's status and last attempt, in plan order."""
    queued = {q.step_id for q in session.metadata.queue}
    reports = []
    for step in session.plan.steps:
        a = last.get(step.id)
        reports.append(
            StepReport(
                id=step.id,
                command=step.command,
                status=_status(session.status, states.get(step.id), queued=step.id in queued),
                exit_code=a.result.exit_code if a else None,
                duration_s=round(a.result.duration_s, 3) if a else 0.0,
                attempts=a.attempt if a else 0,
                output_tail=a.result.output_tail if a else "",
                waits_for=waits.get(step.id, []),
                waiting_until=limit.until if (limit := session.metadata.waits.get(step.id)) else None,
            )
        )
    return reports


def _status(run_status: str, state: str | None, queued: bool) -> str:
    """A step's status: its state, or for a step with none yet, what the run's status makes of it."""
    if state is not None:
        return state
    if run_status == "running":
        return "running" if queued else "pending"
    return "pending" if run_status == "blocked" else "skipped"


def _next_actions(session: SessionRecord, gone: bool, now: datetime) -> list[str]:
    """The run's advice, or, when its orchestrator is gone, how to continue it."""
    if not gone:
        return session.metadata.advice
    delay = heartbeat_delay_s(session.metadata, now)
    beat = "it never recorded a heartbeat" if delay == float("inf") else f"its last heartbeat was {delay:.0f}s ago"
    return [f"its orchestrator is gone ({beat}): continue it  ->  autodev resume {session.run_id}"]


def _tasks(session: SessionRecord, statuses: dict[str, str], attempts: list[StepAttempt], calls: list[LLMCall]) -> list[TaskReport]:
    """Each task's outcome: succeeded when all its steps did; else blocked, failed or pending."""
    by_task: dict[str, list[str]] = {}
    for step in session.plan.steps:
        if step.task:
            by_task.setdefault(step.task, []).append(step.id)
    return [_task(session, task, ids, statuses, attempts, calls) for task, ids in by_task.items()]


def _task(
    session: SessionRecord, task: str, ids: list[str], statuses: dict[str, str], attempts: list[StepAttempt], calls: list[LLMCall],
) -> TaskReport:  # fmt: skip
    seen = {statuses[sid] for sid in ids}
    status = next((st for st in ("blocked", "failed", "stalled", "timed_out", "skipped", "running", "pending") if st in seen), "succeeded")
    purposes = {f"agent:{sid}" for sid in ids}
    own_calls = [c for c in calls if c.purpose in purposes]
    stopped = next((b for b in reversed(session.metadata.blockers) if b.step_id in ids), None) if status != "succeeded" else None
    blocked_at = next((sid for sid in ids if statuses[sid] == "blocked"), None)
    merge = next((s for s in session.plan.steps if s.id in ids and s.merges), None)
    merged = merge is not None and statuses[merge.id] == "succeeded"
    run_branch = session.metadata.repository.branch if session.metadata.repository else None
    return TaskReport(
        task=task, status=status, steps=ids, merged=merged,
        branch=f"{run_branch}-{merge.merges}" if merge and run_branch and not merged else run_branch,
        duration_s=round(sum(a.result.duration_s for a in attempts if a.step_id in ids), 3),
        tokens=sum(c.tokens for c in own_calls), cost_usd=round(sum(c.cost_usd for c in own_calls), 6),
        reason=stopped.summary if stopped else "", action=stopped.suggested_action if stopped else "",
        command=f"autodev resume {session.run_id} --step {blocked_at} --action retry" if blocked_at else "",
    )  # fmt: skip


@dataclass(frozen=True)
class MorningSummary:
    line: str  # how many tasks ended how, and each one that needs a person with why
    action: str  # the first such task's next step with its command ("" when none needs one)


def morning_summary(report: RunReport) -> MorningSummary:
    """The run's end in a line for a notification, and what to do first."""
    if not report.tasks:
        return MorningSummary(f"{report.status}: {report.success_rate:.0%} of the steps succeeded", "")
    counts: dict[str, int] = {}
    for task in report.tasks:
        outcome = "merged" if task.merged else task.status
        counts[outcome] = counts.get(outcome, 0) + 1
    line = ", ".join(f"{n} {status}" for status, n in counts.items()) + f" of {len(report.tasks)} tasks"
    stuck = [t for t in report.tasks if t.status != "succeeded"]
    line += "".join(f"; {t.task}: {t.status}" + (f" ({t.reason[:120]})" if t.reason else "") for t in stuck)
    first = stuck[0] if stuck else None
    action = " ".join(filter(None, (first.action, first.command and f"-> {first.command}"))) if first else ""
    return MorningSummary(line, action)


def _repository(session: SessionRecord, last: dict[str, StepAttempt]) -> RepositoryReport | None:
    """A repository run's branch and changes, with how the tests stood before and after."""
    repo = session.metadata.repository
    if repo is None:
        return None

    def last_line(step_id: str | None) -> str | None:
        attempt = last.get(step_id or "")
        return next((ln for ln in reversed(attempt.result.output_tail.splitlines()) if ln.strip()), None) if attempt else None

    baseline = next((s.id for s in session.plan.steps if s.expect == "any"), None)
    checks = [s.id for s in session.plan.steps if s.baseline and s.id in last]
    return repo.model_copy(update={"tests_before": last_line(baseline), "tests_after": last_line(checks[-1] if checks else None)})


def _waits_for(plan: Plan, blocked: set[str], states: dict[str, str]) -> dict[str, list[str]]:
    """For each step with no final state, the blocked steps it depends on, directly or not."""
    deps = {s.id: s.depends_on for s in plan.steps}
    found: dict[str, set[str]] = {}

    def upstream(step_id: str) -> set[str]:
        # Iterative, so that a long chain of steps does not exhaust the stack.
        pending = [step_id]
        while pending:
            current = pending[-1]
            missing = [d for d in deps[current] if d not in found and d not in blocked]
            if missing:
                pending.extend(missing)
                continue
            pending.pop()
            found[current] = set().union(*({d} if d in blocked else found[d] for d in deps[current]))
        return found[step_id]

    return {s.id: sorted(up) for s in plan.steps if states.get(s.id) in (None, "pending") and (up := upstream(s.id))}
