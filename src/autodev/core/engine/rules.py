"""The run's rules, as data: small classes tried in priority order, the first that applies wins.

After a failed attempt (`FAILURE_RULES`), the seed's self-healing ladder:
- the sandbox went away: block, nothing can run until a person says it is back;
- git on this machine refused a merge step's own work (a full disk, a held lock): block, for a
  person to fix the machine (the task's agent could not);
- the agent's provider said its usage or rate limit is reached: wait until it resets (no retry
  spent, nothing counted against the breaker), or block when that is past the longest wait;
- the failure breaker tripped (the same failure `threshold` times in a row): block, whatever the
  retries say (hammering the same wall again helps nobody);
- a stall is run again up to `max_stall_retries` times, then blocks the run;
- a failure or a timeout is run again while `retries` last;
- a failed check with `feedback_to` sends the run back to its agent step, while rounds last;
- else the step fails, and what depends on it is skipped.

Before a step starts (`START_GATES`): a spent budget, or an agent step with nothing to run its
agent, holds the step for a person. Each rule is tested on its own in `tests/test_rules.py`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from autodev.core.commands import CommandResult
from autodev.core.models import Step, StepDefaults

NO_AGENT = "no coding agent for this step: no model is configured (AUTODEV_LLM_MODEL) and it has no agent or agent_command"


@dataclass(frozen=True)
class Failure:
    """What the rules know of a failed attempt."""

    step: Step
    result: CommandResult
    limits: StepDefaults
    failures: int  # failed or timed-out attempts of the step in its round, this one included
    stalls: int  # stalled attempts of the step in its round, this one included
    breaker_tripped: bool
    rounds_left: bool  # the plan allows another feedback round
    wait_until: datetime | None = None  # the provider's limit stopped it: when to go on
    wait_fits: bool = True  # that is within the longest wait (AUTODEV_LIMIT_WAIT_MAX_S)


@dataclass(frozen=True)
class Retry:
    """Run the step again."""


@dataclass(frozen=True)
class Block:
    """Stop at the step and wait for a person's decision."""

    kind: Literal["stall", "breaker", "sandbox", "host", "limit"]


@dataclass(frozen=True)
class Wait:
    """Run the step again once its provider's limit resets; other steps go on meanwhile."""

    until: datetime


@dataclass(frozen=True)
class SendBack:
    """A failed check sends the run back to an earlier agent step, with the failure as evidence."""

    to: str


@dataclass(frozen=True)
class Settle:
    """The step ends with its status; what depends on it is skipped."""


Verdict = Retry | Block | Wait | SendBack | Settle


class FailureRule(ABC):
    @abstractmethod
    def verdict(self, failure: Failure) -> Verdict | None:
        """This rule's verdict, or None when it does not apply."""


class SandboxLost(FailureRule):
    def verdict(self, failure: Failure) -> Verdict | None:
        return Block("sandbox") if failure.result.sandbox_lost else None


class HostRefused(FailureRule):
    """A merge git could not make on this machine goes to a person, not to the task's agent."""

    def verdict(self, failure: Failure) -> Verdict | None:
        return Block("host") if failure.result.host_refused else None


class LimitReached(FailureRule):
    def verdict(self, failure: Failure) -> Verdict | None:
        if failure.wait_until is None:
            return None
        return Wait(failure.wait_until) if failure.wait_fits else Block("limit")


class BreakerTripped(FailureRule):
    def verdict(self, failure: Failure) -> Verdict | None:
        return Block("breaker") if failure.breaker_tripped else None


class StallLadder(FailureRule):
    def verdict(self, failure: Failure) -> Verdict | None:
        if failure.result.status != "stalled":
            return None
        return Retry() if failure.stalls <= failure.limits.max_stall_retries else Block("stall")


class RetriesLeft(FailureRule):
    def verdict(self, failure: Failure) -> Verdict | None:
        return Retry() if failure.failures <= failure.limits.retries else None


class FeedbackRound(FailureRule):
    def verdict(self, failure: Failure) -> Verdict | None:
        target = failure.step.feedback_to
        return SendBack(target) if target is not None and failure.rounds_left else None


class StepFails(FailureRule):
    def verdict(self, failure: Failure) -> Verdict | None:
        return Settle()


FAILURE_RULES: tuple[FailureRule, ...] = (
    SandboxLost(), HostRefused(), LimitReached(), BreakerTripped(), StallLadder(), RetriesLeft(), FeedbackRound(), StepFails(),
)  # fmt: skip


def verdict_for(failure: Failure, rules: tuple[FailureRule, ...] = FAILURE_RULES) -> Verdict:
    """The verdict of the first rule that applies (the last rule always does)."""
    for rule in rules:
        if (verdict := rule.verdict(failure)) is not None:
            return verdict
    raise AssertionError("the last failure rule applies to every failure")


@dataclass(frozen=True)
class Start:
    """What the gates know of a step about to start."""

    step: Step
    run_id: str
    budget_spent: str | None  # why its budget, or the run's, is spent; None when neither is
    has_agent: bool  # an agent CLI, or a model for the built-in agent, can do an agent step
    files: str  # the files a person doing the step by hand edits
    workspace: str


@dataclass(frozen=True)
class Hold:
    """The step may not start: the run blocks there, for a person to decide."""

    kind: Literal["budget", "manual"]
    summary: str
    action: str  # the suggested action


class StartGate(ABC):
    @abstractmethod
    def hold(self, start: Start) -> Hold | None:
        """Why the step may not start, or None."""


class BudgetSpent(StartGate):
    def hold(self, start: Start) -> Hold | None:
        if start.budget_spent is None:
            return None
        go_on = f"`autodev resume {start.run_id} --step {start.step.id} --action retry` grants one more budget's worth"
        return Hold("budget", start.budget_spent, f"raise the plan's `budget`, or go on: {go_on}")


class NoAgent(StartGate):
    """An agent step with nothing to run it: a person does the step by hand and says so with `skip`."""

    def hold(self, start: Start) -> Hold | None:
        if start.step.kind != "agent" or start.has_agent:
            return None
        instruction = (start.step.instruction or "").strip().rstrip(".")
        return Hold("manual", NO_AGENT, (
            f"do it by hand: {instruction}; edit {start.files} in {start.workspace}, then skip this step to go on "
            f"(`autodev resume {start.run_id} --action skip`), or set AUTODEV_LLM_MODEL and retry"
        ))  # fmt: skip


START_GATES: tuple[StartGate, ...] = (BudgetSpent(), NoAgent())


def hold_for(start: Start, gates: tuple[StartGate, ...] = START_GATES) -> Hold | None:
    """Why the first gate that applies holds the step, or None when it may start."""
    for gate in gates:
        if (held := gate.hold(start)) is not None:
            return held
    return None
