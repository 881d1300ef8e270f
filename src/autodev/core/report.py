"""The run report (the contract's `--json` object), rebuilt from what the state store holds.

Built the same way for a run that just finished and for `autodev status` hours later: each step's
state and last attempt, the blocked steps with what stopped them and the steps that wait on
them, and whether the run's orchestrator is gone (then the advice says how to continue it).
"""

from __future__ import annotations

from datetime import datetime

from autodev.core.commands import StepAttempt
from autodev.core.models import Blocker, Plan, RepositoryReport, RunReport, StepReport, TaskReport, utcnow
from autodev.core.recovery import heartbeat_delay_s, orchestrator_gone
from autodev.core.session import SessionRecord


def build_report(
    session: SessionRecord, attempts: list[StepAttempt], step_states: dict[str, str], now: datetime | None = None
) -> RunReport:
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
        tasks=_tasks(session.plan, {s.id: s.status for s in steps}),
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


def _tasks(plan: Plan, statuses: dict[str, str]) -> list[TaskReport]:
    """Each task's outcome: succeeded when all its steps did; else blocked, failed or pending."""
    by_task: dict[str, list[str]] = {}
    for step in plan.steps:
        if step.task:
            by_task.setdefault(step.task, []).append(step.id)
    reports = []
    for task, ids in by_task.items():
        seen = {statuses[sid] for sid in ids}
        status = next((st for st in ("blocked", "failed", "stalled", "timed_out", "skipped", "running", "pending") if st in seen), "succeeded")
        reports.append(TaskReport(task=task, status=status, steps=ids))
    return reports


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
