"""The run loop's behaviour, in milliseconds: the real loop and engine, driven by the scripted
executor of `autodev.testing` (no Docker, no Prefect, no database). Stalls, retries, the
breaker, feedback rounds, checks set aside by a round, secrets, a fixed clock. Decisions and
restoring a run are in tests/test_decisions.py; each rule on its own in tests/test_rules.py."""

from __future__ import annotations

from datetime import timedelta

from autodev.core.commands import CommandResult
from autodev.core.engine.effects import Policy
from autodev.core.engine.inputs import AttemptEnded, Begin
from autodev.core.events import BreakerTripped, CommandFailed, FeedbackRound, RunBlocked, StepStalled
from autodev.core.models import utcnow
from autodev.testing import FixedClock, Scripted, scripted_engine, scripted_run

HANG = """
project: p
defaults: {stall_timeout_s: 2}
steps:
  - {id: hang, run: "sleep 600"}
  - {id: after, run: "echo after", depends_on: [hang]}
"""


def test_a_silent_command_is_retried_once_then_blocks_the_run_and_nothing_after_it_runs():
    run = scripted_run(HANG, {"sleep": [Scripted("stalled", 137, "partial\n")] * 2}).go()
    assert [(a.step_id, a.attempt, a.result.status) for a in run.attempts] == [("hang", 1, "stalled"), ("hang", 2, "stalled")]
    assert run.states() == {"hang": "blocked"} and run.engine.waits_for_a_person
    assert [s.stalls for s in run.events(StepStalled)] == [1, 2]
    (blocked,) = run.events(RunBlocked)
    assert blocked.reason == "stall" and blocked.step == "hang" and "printed nothing new for 2s" in blocked.suggested_action
    assert [b.kind for b in run.engine.waiting_on()] == ["stall"]
    assert run.engine.progress.status["after"] is None  # not skipped: a person may still retry or skip `hang`
    assert run.decider.asked and run.engine.state.doc.phase == "waiting for a decision on hang"  # nobody decided


def test_the_stall_timeout_setting_is_what_the_advice_quotes():
    engine = scripted_engine("project: p\nsteps:\n  - {id: hang, run: 'sleep 600', max_stall_retries: 0}\n", Policy(stall_timeout_s=2))
    run = scripted_run(engine, {"sleep": [Scripted("stalled", 137)]}).go()
    assert run.executor.started[0].limits.stall_timeout_s == 2
    (failed,) = run.events(CommandFailed)
    assert "printed nothing new for 2s" in failed.suggested_action and "300" not in failed.suggested_action


def test_failures_use_their_retries_then_fail_the_step_and_skip_what_depends_on_it():
    run = scripted_run("""
project: p
steps:
  - {id: build, run: "make", retries: 2}
  - {id: test, run: "pytest", depends_on: [build]}
  - {id: lint, run: "ruff ."}
""", {"make": [Scripted("failed", 2, f"error {n}\n") for n in ("a", "b", "c")]}).go()  # three different failures
    assert [a.attempt for a in run.attempts if a.step_id == "build"] == [1, 2, 3]
    assert run.states() == {"build": "failed", "test": "skipped", "lint": "succeeded"}
    assert run.engine.progress.run_status == "failed" and not run.events(RunBlocked) and not run.decider.asked
    assert [b.kind for b in run.engine.state.doc.blockers] == ["failure"] * 3


def test_the_breaker_blocks_the_third_identical_failure_whatever_the_retries():
    wall = [Scripted("failed", 1, "ModuleNotFoundError: No module named requests2\n")] * 6
    run = scripted_run("project: p\nsteps:\n  - {id: wall, run: 'pip install requests2', retries: 5}\n", {"pip": wall}).go()
    assert [a.breaker_tripped for a in run.attempts] == [False, False, True]
    (tripped,) = run.events(BreakerTripped)
    assert tripped.threshold == 3 and "pip install requests2" in tripped.suggested_action
    assert [e.reason for e in run.events(RunBlocked) if type(e) is RunBlocked] == ["breaker"]
    assert run.states() == {"wall": "blocked"}


FEEDBACK = """
project: p
max_feedback_rounds: 2
agent_command: "agent {instruction}"
steps:
  - {id: implement, kind: agent, instruction: "write the code"}
  - {id: test, run: "pytest", depends_on: [implement], feedback_to: implement}
"""


def test_a_failed_check_sends_the_run_back_to_its_agent_with_the_evidence():
    run = scripted_run(FEEDBACK, {"pytest": [Scripted("failed", 1, "FAILED tests/test_x.py::test_y\n")]}).go()
    assert [(a.step_id, a.attempt, a.result.status) for a in run.attempts] == [
        ("implement", 1, "succeeded"), ("test", 1, "failed"), ("implement", 2, "succeeded"), ("test", 2, "succeeded"),
    ]
    (round_one,) = run.events(FeedbackRound)
    assert (round_one.step, round_one.to, round_one.round, round_one.rerun) == ("test", "implement", 1, ["implement", "test"])
    second_agent = [s.command for s in run.executor.started if s.step.id == "implement"][1]
    assert "FAILED tests/test_x.py::test_y" in second_agent and "did not pass" in second_agent
    assert run.engine.progress.run_status == "succeeded" and run.engine.state.doc.feedback_rounds == 1


def test_feedback_rounds_are_bounded_then_the_check_fails_for_good():
    run = scripted_run(FEEDBACK, {"pytest": [Scripted("failed", 1, "1 failed\n")] * 5}).go()
    assert len(run.events(FeedbackRound)) == 2
    assert [a.step_id for a in run.attempts] == ["implement", "test"] * 3
    assert run.engine.progress.status == {"implement": "succeeded", "test": "failed"}


def test_a_check_that_ran_on_the_old_code_is_set_aside_and_runs_again():
    plan = """
project: p
max_parallel: 2
agent_command: "agent {instruction}"
steps:
  - {id: implement, kind: agent, instruction: "write it"}
  - {id: unit, run: "pytest unit", depends_on: [implement], feedback_to: implement}
  - {id: e2e, run: "pytest e2e", depends_on: [implement]}
"""
    # unit ends first and sends the run back while e2e still runs on the old code
    unit_first = lambda running: next((s for s in running if s.step.id == "unit"), running[0])
    run = scripted_run(plan, {"pytest unit": [Scripted("failed", 1, "1 failed\n")]}, order=unit_first).go()
    e2e_first = next(e for e in run.recorder.written if any(a.step_id == "e2e" for a in e.attempts))
    assert e2e_first.step_states == {} and e2e_first.loop_status == "set aside e2e"  # kept, not counted
    # the new round starts only once the check on the old code has ended
    assert run.executor.timeline.index(("end", "e2e", 1)) < run.executor.timeline.index(("start", "implement", 2))
    assert run.engine.progress.status == {"implement": "succeeded", "unit": "succeeded", "e2e": "succeeded"}


def test_a_result_that_is_no_news_changes_nothing():
    engine = scripted_engine("project: p\nsteps:\n  - {id: a, run: 'true'}\n")
    engine.handle(Begin())
    now = utcnow()
    done = AttemptEnded(step_id="a", attempt=1, result=CommandResult(status="succeeded", exit_code=0, started_at=now, finished_at=now))
    assert engine.handle(done).attempts
    again = engine.handle(done)  # the task's own end, after its result
    assert not (again.attempts or again.events or again.step_states or again.started)


def test_secrets_in_a_steps_env_never_reach_what_is_stored_or_sent():
    plan = "project: p\nsteps:\n  - {id: a, run: 'curl -H token:s3cr3t-value x', env: {API_TOKEN: s3cr3t-value}}\n"
    run = scripted_run(plan, {"curl": [Scripted("failed", 7, "denied for s3cr3t-value\n")]}).go()
    assert run.executor.started[0].env["API_TOKEN"] == "s3cr3t-value"  # the command gets it
    written = repr([(e.attempts, e.events, e.notes) for e in run.recorder.written]) + "".join(d.model_dump_json() for d in run.recorder.documents)
    assert "s3cr3t-value" not in written and "***" in run.attempts[0].command


def test_the_clock_and_the_ids_come_from_outside():
    clock = FixedClock()
    engine = scripted_engine(HANG, clock=clock)
    started = engine.handle(Begin())
    assert [s.queue_id for s in started.started] == ["q1"] and engine.state.doc.queue[0].dispatched_at == clock.now
    clock.advance(30)
    now = clock.now
    stalled = CommandResult(status="stalled", exit_code=137, started_at=now - timedelta(seconds=2), finished_at=now)
    again = engine.handle(AttemptEnded(step_id="hang", attempt=1, result=stalled))
    assert [s.queue_id for s in again.started] == ["q2"] and engine.state.doc.blockers[-1].ts == now
