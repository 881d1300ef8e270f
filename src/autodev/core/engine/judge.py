"""What a finished command means for its step, judged once, by the executor that ran it, so
the task run's own verdict in the Prefect UI says what the run does."""

from __future__ import annotations

from autodev.core.commands import CommandResult
from autodev.core.diagnosis import failed_tests
from autodev.core.limits import limit_hit
from autodev.core.models import Step

LIMIT_LINES = 20  # the end of an agent's output a limit is looked for in (with its error events)


def judge(step: Step, result: CommandResult, baseline_output: str = "") -> CommandResult:
    """A finished command as its step expects it: a test-first check (`expect: tests-fail`)
    succeeds when the tests fail (exit 1, or 2: pytest could not import what is not written yet);
    a baseline (`expect: any`) whatever they do; a check
    with a `baseline` when the only tests that fail failed in the baseline's output too. Stalls,
    timeouts and lost sandboxes stay what they are. An agent that did not succeed may have been
    stopped by its provider's limit: the result says so (`limit`)."""
    if step.kind == "agent" and result.status != "succeeded":  # its preset's error events, else the end of its output
        said = result.agent.errors if result.agent else result.output_tail.splitlines()[-LIMIT_LINES:]
        result = result.model_copy(update={"limit": limit_hit(said, result.finished_at)})
    if result.status not in ("succeeded", "failed") or result.exit_code is None:
        return result
    report = result.agent
    if result.status == "succeeded" and report and report.errors and report.changed_nothing:
        idle = f"the agent exited 0 but reported errors and changed nothing: {report.errors[-1]}"
        return result.model_copy(update={"status": "failed", "exit_reason": idle[:500]})
    if step.expect == "any":
        return result.model_copy(update={"status": "succeeded", "exit_reason": "the baseline: how the tests stood before any change"})
    if step.expect == "tests-fail":
        if result.exit_code in (1, 2):  # failed; or (pytest's 2) could not import what does not exist yet
            return result.model_copy(update={"status": "succeeded", "exit_reason": "the tests fail, as they must before the code exists"})
        why: str | None = "the tests passed before the code exists: they do not test it" if result.exit_code == 0 else result.exit_reason
        return result.model_copy(update={"status": "failed", "exit_reason": why})
    if step.baseline and result.status == "failed":
        before, now = failed_tests(baseline_output), failed_tests(result.output_tail)
        if now and now <= before:
            shown = ", ".join(sorted(now)[:5])
            reason = f"only tests that already failed before the run failed (in step {step.baseline}): {shown}"
            return result.model_copy(update={"status": "succeeded", "exit_reason": reason})
    return result
