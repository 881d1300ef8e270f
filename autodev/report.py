"""The run report (the contract's `--json` object), rebuilt from what the state store holds.

Built the same way for a run that just finished and for `autodev status` hours later.
"""

from __future__ import annotations

from autodev.models import RunReport, StepAttempt, StepReport
from autodev.session import SessionRecord


def build_report(session: SessionRecord, attempts: list[StepAttempt], step_states: dict[str, str]) -> RunReport:
    last = {a.step_id: a for a in attempts}  # attempts come oldest first
    queued = {q.step_id for q in session.metadata.queue}
    steps = []
    for step in session.plan.steps:
        status = step_states.get(step.id)
        if status is None:
            if session.status == "running":
                status = "running" if step.id in queued else "pending"
            else:
                status = "pending" if session.status == "blocked" else "skipped"
        a = last.get(step.id)
        steps.append(
            StepReport(
                id=step.id,
                command=step.command,
                status=status,
                exit_code=a.result.exit_code if a else None,
                duration_s=round(a.result.duration_s, 3) if a else 0.0,
                attempts=a.attempt if a else 0,
                output_tail=a.result.output_tail if a else "",
            )
        )
    succeeded = sum(s.status == "succeeded" for s in steps)
    return RunReport(
        run_id=session.run_id,
        status=session.status,
        steps=steps,
        success_rate=round(succeeded / len(steps), 4),
        interventions=len(session.metadata.interventions),
        next_actions=session.metadata.next_actions,
    )
