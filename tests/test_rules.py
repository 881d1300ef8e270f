"""Each of the run's rules on its own, then in their order (`autodev/core/engine/rules.py`)."""

from __future__ import annotations

import pytest

from autodev.core.commands import CommandResult
from autodev.core.engine.rules import (
    FAILURE_RULES,
    Block,
    BreakerTripped,
    BudgetSpent,
    Failure,
    FeedbackRound,
    HostRefused,
    NoAgent,
    RetriesLeft,
    Retry,
    SandboxLost,
    SendBack,
    Settle,
    StallLadder,
    Start,
    StepFails,
    hold_for,
    verdict_for,
)
from autodev.core.engine.state import Breaker
from autodev.core.models import Step, StepDefaults, utcnow

CHECK = Step(id="test", run="pytest", feedback_to="implement")
LIMITS = StepDefaults(retries=2, max_stall_retries=1)


def failure(status="failed", failures=1, stalls=0, tripped=False, lost=False, rounds_left=True, step=CHECK, host=False) -> Failure:
    now = utcnow()
    result = CommandResult(status=status, exit_code=None if lost else 1, started_at=now, finished_at=now, sandbox_lost=lost,
                           host_refused=host)  # fmt: skip
    return Failure(step=step, result=result, limits=LIMITS, failures=failures, stalls=stalls, breaker_tripped=tripped, rounds_left=rounds_left)


def test_a_lost_sandbox_blocks_and_nothing_else_does():
    assert SandboxLost().verdict(failure(lost=True)) == Block("sandbox")
    assert SandboxLost().verdict(failure()) is None


def test_a_merge_git_refused_on_this_machine_blocks_before_any_retry_or_round():
    assert HostRefused().verdict(failure(host=True)) == Block("host")
    assert HostRefused().verdict(failure()) is None
    assert verdict_for(failure(host=True, failures=1)) == Block("host")  # retries and rounds left: still a person's


def test_the_breaker_blocks_when_it_tripped():
    assert BreakerTripped().verdict(failure(tripped=True)) == Block("breaker")
    assert BreakerTripped().verdict(failure()) is None


@pytest.mark.parametrize(("stalls", "verdict"), [(1, Retry()), (2, Block("stall"))])
def test_a_stall_is_retried_max_stall_retries_times_then_blocks(stalls, verdict):
    assert StallLadder().verdict(failure("stalled", stalls=stalls)) == verdict
    assert StallLadder().verdict(failure("failed")) is None  # only stalls climb this ladder


@pytest.mark.parametrize(("failures", "verdict"), [(1, Retry()), (2, Retry()), (3, None)])
def test_failures_are_retried_while_retries_last(failures, verdict):
    # two retries: the third failure (this one included) is the last
    assert RetriesLeft().verdict(failure(failures=failures)) == verdict


def test_a_failed_check_goes_back_to_its_agent_while_rounds_last():
    assert FeedbackRound().verdict(failure()) == SendBack("implement")
    assert FeedbackRound().verdict(failure(rounds_left=False)) is None
    assert FeedbackRound().verdict(failure(step=Step(id="build", run="make"))) is None


def test_the_last_rule_fails_the_step():
    assert StepFails().verdict(failure()) == Settle()


@pytest.mark.parametrize(
    ("case", "verdict"),
    [
        (failure(lost=True, tripped=True), Block("sandbox")),  # the lost sandbox first
        (failure("stalled", stalls=1, tripped=True), Block("breaker")),  # the breaker before the stall ladder
        (failure("stalled", stalls=1), Retry()),
        (failure(failures=1), Retry()),  # retries before a feedback round
        (failure(failures=3), SendBack("implement")),
        (failure(failures=3, rounds_left=False), Settle()),
    ],
)
def test_the_first_rule_that_applies_wins(case, verdict):
    assert verdict_for(case, FAILURE_RULES) == verdict


def test_the_breaker_trips_on_the_third_identical_failure_only():
    breaker = Breaker()
    assert [breaker.record("same", 3) for _ in range(3)] == [False, False, True]
    fresh = Breaker()
    assert [fresh.record(fp, 3) for fp in ("a", "b", "c")] == [False, False, False]
    reset = Breaker()
    assert [reset.record(fp, 3) for fp in ("x", "x", None, "x", "x")] == [False, False, False, False, False]


AGENT = Step(id="edit", kind="agent", instruction="add a greeting.")


def start(step=AGENT, spent=None, has_agent=False) -> Start:
    return Start(step=step, run_id="r1", budget_spent=spent, has_agent=has_agent, files="app.py", workspace="/ws")


def test_a_spent_budget_holds_the_step_with_the_figures_and_the_way_on():
    held = BudgetSpent().hold(start(spent="step edit's budget is spent: 350 tokens of 300", has_agent=True))
    assert held is not None and held.kind == "budget" and "350 tokens of 300" in held.summary
    assert "`autodev resume r1 --step edit --action retry`" in held.action
    assert BudgetSpent().hold(start(has_agent=True)) is None


def test_an_agent_step_with_nothing_to_run_it_is_left_to_a_person():
    held = NoAgent().hold(start())
    assert held is not None and held.kind == "manual"
    assert held.action.startswith("do it by hand: add a greeting; edit app.py in /ws") and "--action skip" in held.action
    assert NoAgent().hold(start(has_agent=True)) is None
    assert NoAgent().hold(start(step=Step(id="build", run="make"))) is None


def test_the_budget_gate_comes_first():
    held = hold_for(start(spent="the run's budget is spent: $2.00 of $1.00"))
    assert held is not None and held.kind == "budget"
