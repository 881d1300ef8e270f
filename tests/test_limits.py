"""Waiting out a provider's limit, in milliseconds: what an agent's words say of the limit and
its reset, and the real loop and engine with a fixed clock: the step waits (not a failure, no
retry spent, nothing for the breaker), the steps of the same provider wait with it while others
go on, it runs again when the limit resets, a person can end the wait, and a reset too far off
or waits that go on too long block with the figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from autodev.core.engine.effects import Policy
from autodev.core.engine.inputs import Restore
from autodev.core.events import RunBlocked, StepWaiting
from autodev.core.limits import NO_RESET_WAIT_S, limit_hit
from autodev.core.session import Decision, SessionMetadata
from autodev.testing import FixedClock, Scripted, scripted_engine, scripted_run

NOW = datetime(2026, 12, 6, 3, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("line", "resets_at"),
    [
        ("Rate limit reached. Please try again in 1m30s.", NOW + timedelta(seconds=90)),
        ("HTTP 429 Too Many Requests, Retry-After: 20", NOW + timedelta(seconds=20)),
        ("usage limit: resets in 2 hours and 5 minutes", NOW + timedelta(hours=2, minutes=5)),
        ("You've hit your usage limit. Try again at 3:04 AM.", NOW + timedelta(minutes=5)),  # the end of that minute
        ("You've hit your usage limit. Try again at 2:40 AM.", NOW - timedelta(minutes=19)),  # just gone: go on now
        ("5-hour limit reached - resets 1am", NOW + timedelta(hours=22, minutes=1)),  # long gone today: tomorrow's
        ("You exceeded your current quota; it resets at 2026-12-06T04:00:00Z", NOW + timedelta(hours=1)),
        ("[2026-12-06T02:59:58Z] rate limited: try again in 20m", NOW + timedelta(minutes=20)),  # not the log's stamp
        ("rate limit reached, try again after 5 minutes", NOW + timedelta(minutes=5)),
        ("Claude AI usage limit reached|1765000000", datetime.fromtimestamp(1765000000, UTC)),
        ("exceeded retry limit, last status: 429 Too Many Requests", None),  # a limit, no reset said
    ],
)  # fmt: skip
def test_an_agents_words_say_it_hit_a_limit_and_when_it_resets(line, resets_at):
    hit = limit_hit(["working...", line], NOW)
    assert hit is not None and hit.line == line and hit.resets_at == resets_at


def test_other_failures_are_no_limit():
    lines = ["FAILED tests/test_x.py::test_y - assert 1 == 2", "Error: cannot find module", "tests/test_api.py:429: AssertionError",
             "error: call of overloaded 'f(int)' is ambiguous", "OSError: [Errno 122] Disk quota exceeded"]  # fmt: skip
    assert limit_hit(lines, NOW) is None


AGENTS = """
project: p
max_parallel: 3
agent: codex
defaults: {{retries: 0}}
{budget}
steps:
  - {{id: one, kind: agent, instruction: "first task"}}
  - {{id: two, kind: agent, instruction: "second task", depends_on: [build]}}
  - {{id: build, run: "make"}}
  - {{id: mine, kind: agent, instruction: "my own agent", agent_command: "my-agent {{instruction}}"}}
"""
LIMITED = Scripted("failed", 1, "ERROR: You've hit your usage limit. Try again in 20s.\n")


def limited_run(budget: str = "", policy: Policy | None = None, decisions=(), results=(LIMITED,)):
    clock = FixedClock(NOW)
    engine = scripted_engine(AGENTS.format(budget=budget), policy, clock=clock)
    return scripted_run(engine, {"codex exec": list(results)}, decisions), clock


def test_a_step_stopped_by_its_limit_waits_until_it_resets_then_runs_again_while_others_go_on():
    run, clock = limited_run()
    run.go()
    (waiting,) = run.events(StepWaiting)
    ended = NOW + timedelta(seconds=1)  # a scripted attempt takes 1 s: "in 20s" counts from its end
    assert waiting.step == "one" and waiting.until == (ended + timedelta(seconds=20)).isoformat()
    assert "waiting until 2026-12-06 03:00:21 UTC" in waiting.summary
    timeline = [(event, step) for event, step, _ in run.executor.timeline]
    # While `one` waits: the other codex step (`two`) is held back, the command and another agent go on.
    assert timeline.index(("end", "build")) < timeline.index(("start", "two"))
    starts = [step for event, step in timeline if event == "start"]
    assert starts.count("one") == 2 and starts.index("mine") < starts.index("two")
    assert starts.index("two") > len(starts) - 1 - starts[::-1].index("one")  # `two` only once `one`'s wait ended
    assert run.engine.progress.run_status == "succeeded" and run.engine.state.breaker.count == 0
    assert clock.now >= ended + timedelta(seconds=20)  # it ran again only once the limit reset
    assert not run.engine.state.doc.waits and run.states()["one"] == "succeeded"


def test_a_limit_that_says_no_reset_waits_a_while_and_the_wait_is_no_work_for_the_budget():
    silent = Scripted("failed", 1, "exceeded retry limit, last status: 429 Too Many Requests\n")
    run, clock = limited_run(budget="budget: {wall_s: 30}", results=(silent,))
    run.go()
    assert run.events(StepWaiting)[0].until == (NOW + timedelta(seconds=NO_RESET_WAIT_S)).isoformat()  # from when it was told
    assert run.engine.progress.run_status == "succeeded"  # 60 s waited, yet a 30 s budget of work is not spent
    assert run.engine.state.doc.spent["(run)"].waited == pytest.approx(NO_RESET_WAIT_S)


def test_a_person_ends_the_wait_early():
    run, clock = limited_run(decisions=[Decision(step="one", action="retry")])
    run.go()
    assert clock.now < NOW + timedelta(seconds=20)  # it did not wait for the reset
    assert run.engine.progress.run_status == "succeeded" and run.engine.state.doc.interventions[0].action == "retry"
    assert [b.kind for b in run.decider.asked[0]] == ["limit"]  # what the person saw: the step waiting, and until when


def test_a_reset_past_the_longest_wait_blocks_with_the_figures():
    far = Scripted("failed", 1, "You exceeded your current quota; it resets at 2031-01-01T00:00:00Z\n")
    run, _ = limited_run(results=(far,))
    run.go()
    (blocked,) = [e for e in run.events(RunBlocked) if e.step == "one"]
    assert blocked.reason == "limit" and "resets at 2031-01-01 00:00:00 UTC" in blocked.summary
    assert "AUTODEV_LIMIT_WAIT_MAX_S, 21600s" in blocked.summary and "raise AUTODEV_LIMIT_WAIT_MAX_S" in blocked.suggested_action
    assert not run.events(StepWaiting)


def test_waits_in_a_row_count_from_the_first_and_block_past_the_longest():
    run, _ = limited_run(policy=Policy(limit_wait_max_s=50), results=(LIMITED,) * 5)
    run.go()
    waits = [e.until for e in run.events(StepWaiting) if e.step == "one"]
    assert len(waits) == 2  # ending 21 s and 42 s after the first; the third would end past 50 s
    assert ("one", "limit") in [(e.step, e.reason) for e in run.events(RunBlocked)] and run.engine.state.breaker.count == 0


def test_waits_in_a_row_count_across_a_resumed_run():
    clock = FixedClock(NOW)
    doc = SessionMetadata(limit_since={"one": NOW - timedelta(seconds=40)})  # as the run's document kept it
    engine = scripted_engine(AGENTS.format(budget=""), Policy(limit_wait_max_s=50), doc=doc, clock=clock)
    run = scripted_run(engine, {"codex exec": [LIMITED]})
    run.go(Restore(step_states={}))
    assert ("one", "limit") in [(e.step, e.reason) for e in run.events(RunBlocked)]  # 40 s before, 21 s now: past 50 s
    assert not [e for e in run.events(StepWaiting) if e.step == "one"]
