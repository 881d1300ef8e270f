"""What the loop does after a command: finish the step, run it again, or block the run.

The seed's self-healing rules as plain functions:
- a stalled command is killed and run again up to `max_stall_retries` times, then the step and
  the run are BLOCKED and no further command is dispatched;
- a failed or timed-out command is run again while `retries` last, then the step fails and
  everything downstream is skipped;
- whatever the budgets say, `threshold` consecutive failures with the same fingerprint trip
  the breaker: the run is BLOCKED (hammering the same wall again helps nobody).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from autodev.core.diagnosis import failed_tests
from autodev.core.models import CommandResult, Step, StepDefaults
from autodev.core.session import SessionMetadata

Move = Literal["finish", "retry", "block"]
HEARTBEAT_LATE_S = 90  # the seed's dashboard turns the heartbeat delay red past this


def judge(step: Step, result: CommandResult, baseline_output: str = "") -> CommandResult:
    """A finished command as its step expects it: a test-first check (`expect: tests-fail`)
    succeeds when the tests fail (exit 1, or 2: pytest could not import what is not written yet);
    a baseline (`expect: any`) whatever they do; a check
    with a `baseline` when the only tests that fail failed in the baseline's output too. Stalls,
    timeouts and lost sandboxes stay what they are."""
    if result.status not in ("succeeded", "failed") or result.exit_code is None:
        return result
    report = result.agent
    if result.status == "succeeded" and report and report.errors and report.changed_nothing:
        why = f"the agent exited 0 but reported errors and changed nothing: {report.errors[-1]}"
        return result.model_copy(update={"status": "failed", "exit_reason": why[:500]})
    if step.expect == "any":
        return result.model_copy(update={"status": "succeeded", "exit_reason": "the baseline: how the tests stood before any change"})
    if step.expect == "tests-fail":
        if result.exit_code in (1, 2):  # failed; or (pytest's 2) could not import what does not exist yet
            return result.model_copy(update={"status": "succeeded", "exit_reason": "the tests fail, as they must before the code exists"})
        why = "the tests passed before the code exists: they do not test it" if result.exit_code == 0 else result.exit_reason
        return result.model_copy(update={"status": "failed", "exit_reason": why})
    if step.baseline and result.status == "failed":
        before, now = failed_tests(baseline_output), failed_tests(result.output_tail)
        if now and now <= before:
            shown = ", ".join(sorted(now)[:5])
            reason = f"only tests that already failed before the run failed (in step {step.baseline}): {shown}"
            return result.model_copy(update={"status": "succeeded", "exit_reason": reason})
    return result


def next_move(status: str, attempt: int, stalls: int, limits: StepDefaults, breaker_tripped: bool) -> Move:
    """`attempt` counts every run of the step so far; `stalls` how many of them stalled."""
    if status == "succeeded":
        return "finish"
    if breaker_tripped:
        return "block"
    if status == "stalled":
        return "retry" if stalls <= limits.max_stall_retries else "block"
    failures = attempt - stalls
    return "retry" if failures <= limits.retries else "finish"


class FailureBreaker:
    """Trips after `threshold` consecutive failures with the same fingerprint; a success resets it."""

    def __init__(self, threshold: int):
        self.threshold = threshold
        self.last: str | None = None
        self.count = 0

    def record(self, fp: str | None) -> bool:
        """Record one command result (None for a success); True when the breaker trips."""
        if fp is None or fp != self.last:
            self.last, self.count = fp, (0 if fp is None else 1)
        else:
            self.count += 1
        return fp is not None and self.count >= self.threshold


class AgentRounds:
    """What each agent step's rounds changed. A round that changed nothing, or what an earlier
    round changed, is no success for the breaker: the failures around it stay consecutive, so
    a feedback loop going nowhere blocks for a person."""

    def __init__(self) -> None:
        self.changes: dict[str, set[str]] = {}

    def repeats(self, step: Step, result: CommandResult) -> bool:
        if step.kind != "agent":
            return False
        report, digest = result.agent, result.round_digest
        idle = digest == "" or (report is not None and report.changed_nothing)
        seen = self.changes.setdefault(step.id, set())
        again = digest is not None and digest in seen
        if digest:
            seen.add(digest)
        return idle or again


def heartbeat_delay_s(meta: SessionMetadata, now: datetime) -> float:
    """Seconds since the loop last recorded its heartbeat (infinite if it never did)."""
    if meta.orchestrator_heartbeat is None:
        return float("inf")
    return max((now - meta.orchestrator_heartbeat.ts).total_seconds(), 0.0)


def heartbeat_is_late(meta: SessionMetadata, run_status: str, now: datetime) -> bool:
    """Only a running run's heartbeat can be late (a finished or blocked loop stops beating)."""
    return run_status == "running" and heartbeat_delay_s(meta, now) > HEARTBEAT_LATE_S
