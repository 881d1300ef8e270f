"""The run report (the contract's `--json` object), rebuilt from what the state store holds.

Built the same way for a run that just finished and for `autodev status` hours later: the
recorded attempts are replayed through the scheduling rules, so both always agree.
"""

from __future__ import annotations

from autodev.models import RunReport, SessionRecord, StepAttempt, StepReport
from autodev.scheduling import Progress


def build_report(session: SessionRecord, attempts: list[StepAttempt]) -> RunReport:
    plan = session.plan
    progress = Progress(plan)
    last: dict[str, StepAttempt] = {}
    for a in attempts:
        last[a.step_id] = a
        retries = plan.limits_for(plan.step(a.step_id))[2]
        if a.result.status == "succeeded" or a.attempt > retries:
            progress.finish(a.step_id, a.result.status)
    queued = {q.step_id for q in session.metadata.queue}
    steps = []
    for step in plan.steps:
        status = progress.status[step.id]
        if status is None:
            if step.id in queued and session.status == "running":
                status = "running"
            else:
                status = "pending" if session.status == "running" else "skipped"
        a = last.get(step.id)
        steps.append(
            StepReport(
                id=step.id,
                command=step.run,
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
        interventions=0,
        next_actions=session.metadata.next_actions,
    )
