"""A person's decisions, restoring a run and a lost orchestrator, in milliseconds: the real loop
and engine with the scripted executor and scripted decisions of `autodev.testing`."""

from __future__ import annotations

from datetime import timedelta

from autodev.core.commands import CommandResult, StepAttempt
from autodev.core.engine.inputs import AttemptEnded, Begin, Restore
from autodev.core.events import RunBlocked, RunResumed
from autodev.core.models import utcnow
from autodev.core.plan import parse_plan
from autodev.core.recovery import orchestrator_lost
from autodev.core.session import Decision, Heartbeat, LeftAttempt, QueueEntry, SessionMetadata, SessionRecord
from autodev.testing import Scripted, scripted_engine, scripted_run

STUCK = """
project: p
defaults: {max_stall_retries: 0}
steps:
  - {id: stuck, run: "sleep 600"}
  - {id: after, run: "echo after", depends_on: [stuck]}
"""


def test_retry_with_a_new_command_replaces_the_step_and_the_run_goes_on():
    decision = Decision(action="retry", command="echo fixed", note="placeholder")
    run = scripted_run(STUCK, {"sleep": [Scripted("stalled", 137)]}, decisions=[decision]).go()
    paused = next(e for e in run.recorder.written if e.status == "blocked")
    assert paused.loop_status == "waiting for a decision on stuck"
    assert any(d.phase == "waiting for a decision on stuck" for d in run.recorder.documents)
    decided = next(e for e in run.recorder.written if e.plan is not None)
    assert decided.status == "running" and decided.plan.step("stuck").run == "echo fixed"
    (resumed,) = run.events(RunResumed)
    assert (resumed.step_id, resumed.action, resumed.note) == ("stuck", "retry", "placeholder")
    assert run.engine.state.doc.interventions[0].command == "echo fixed"
    assert [(a.step_id, a.attempt, a.command) for a in run.attempts] == [
        ("stuck", 1, "sleep 600"), ("stuck", 2, "echo fixed"), ("after", 1, "echo after"),
    ]
    assert run.engine.progress.run_status == "succeeded"


MANUAL = """
project: p
steps:
  - {id: manual, kind: agent, instruction: "do it by hand"}
  - {id: check, run: "pytest", depends_on: [manual]}
  - {id: other, run: "echo other", depends_on: [manual]}
"""


def test_skip_lets_the_steps_after_it_run_and_abort_runs_nothing_more():
    skipped = scripted_run(MANUAL, decisions=[Decision(action="skip")])  # no model and no agent CLI: left to a person
    (manual,) = skipped.go().decider.asked[0]
    assert manual.kind == "manual" and "do it by hand" in manual.suggested_action
    assert {a.step_id for a in skipped.attempts} == {"check", "other"}
    assert skipped.engine.progress.run_status == "succeeded"  # skipped by a person: done by hand

    aborted = scripted_run(MANUAL, decisions=[Decision(action="abort")]).go()
    assert aborted.states() == {"manual": "failed", "check": "skipped", "other": "skipped"}
    assert not aborted.attempts and aborted.engine.progress.run_status == "failed"


TWO_STEPS = "project: p\nsteps:\n  - {id: a, run: 'true'}\n  - {id: b, run: 'true', depends_on: [a]}\n"


def test_a_decision_with_no_blocked_step_goes_on_from_the_first_unfinished_one():
    # The watchdog blocked the run: no step is in the blocked state.
    run = scripted_run(TWO_STEPS).go(Restore(step_states={"a": "succeeded"}), Decision(action="retry"))
    assert run.engine.state.doc.interventions[0].step_id == "b"
    assert [a.step_id for a in run.attempts] == ["b"]
    for action, status in (("skip", "succeeded"), ("abort", "failed")):
        other = scripted_run(TWO_STEPS).go(Restore(step_states={"a": "succeeded"}), Decision(action=action))
        assert other.engine.progress.run_status == status, action  # skip goes on; abort ends the run


def test_restore_keeps_finished_steps_counts_attempts_on_and_clears_the_old_queue():
    now = utcnow()
    old = SessionMetadata(queue=[QueueEntry(queue_id="q-dead", step_id="b", attempt=2, dispatched_at=now)])
    engine = scripted_engine("project: p\nsteps:\n  - {id: a, run: 'true'}\n  - {id: b, run: 'make', retries: 1}\n", doc=old)
    failed = CommandResult(status="failed", exit_code=1, started_at=now, finished_at=now)
    attempts = [StepAttempt(run_id="run-1", step_id="b", attempt=n, command="make", result=failed) for n in (1, 2)]
    run = scripted_run(engine, {"make": [Scripted("failed", 1, "x\n")] * 2}).go(Restore(step_states={"a": "succeeded"}, attempts=attempts))
    assert "q-dead" not in {q.queue_id for d in run.recorder.documents for q in d.queue}
    assert [(a.step_id, a.attempt) for a in run.attempts] == [("b", 3), ("b", 4)]  # a's done; b's retries afresh


def test_a_lost_orchestrator_blocks_its_run_at_the_step_it_was_running():
    now = utcnow()
    meta = SessionMetadata(
        orchestrator_heartbeat=Heartbeat(ts=now - timedelta(minutes=10), loop_status="waiting for build"),
        queue=[QueueEntry(queue_id="q1", step_id="build", attempt=1, dispatched_at=now)],
    )
    session = SessionRecord(
        run_id="r", project="p", status="running", workspace="/ws", flow_run_id="f", created_at=now, updated_at=now,
        plan=parse_plan("project: p\nsteps:\n  - {id: build, run: make}\n"), metadata=meta,
    )
    lost = orchestrator_lost(session, now, containers_removed=1)
    assert lost.doc.phase == "orchestrator lost" and not session.metadata.blockers  # a new document; the read one is untouched
    (blocker,) = lost.doc.blockers
    assert blocker.kind == "watchdog" and blocker.step_id == "build" and "600s ago" in blocker.summary
    assert lost.event.reason == "watchdog" and lost.event.heartbeat_delay_s == 600 and lost.event.containers_removed == 1


KEEP_GOING = """
project: p
defaults: {stall_timeout_s: 2, max_stall_retries: 0}
steps:
  - {id: stuck, run: "sleep 600"}
  - {id: after-stuck, run: "echo after", depends_on: [stuck]}
  - {id: manual, kind: agent, instruction: "by hand"}
  - {id: free, run: "echo free"}
  - {id: after-free, run: "echo after free", depends_on: [free]}
"""


def test_a_blocked_step_holds_back_only_what_depends_on_it():
    run = scripted_run(KEEP_GOING, {"sleep": [Scripted("stalled", 137)]}).go()
    assert run.states() == {"stuck": "blocked", "manual": "blocked", "free": "succeeded", "after-free": "succeeded"}
    assert [e.step for e in run.events(RunBlocked)] == ["stuck", "manual"]  # each announced as it blocked
    assert run.engine.waits_for_a_person and run.engine.progress.status["after-stuck"] is None
    assert [(b.step_id, b.kind) for b in run.decider.asked[0]] == [("stuck", "stall"), ("manual", "manual")]
    assert run.engine.state.doc.phase == "waiting for a decision on stuck, manual"


def test_several_blocked_steps_take_one_decision_each():
    decisions = [Decision(action="skip", step="free"), Decision(action="skip", step="manual"), Decision(action="retry", command="echo unstuck")]
    run = scripted_run(KEEP_GOING, {"sleep": [Scripted("stalled", 137)]}, decisions=decisions).go()
    ignored = next(e for e in run.recorder.written if any("not blocked" in n.text for n in e.notes))
    assert ignored.status is None  # a decision on a step that is not blocked changes nothing
    skipped = next(e for e in run.recorder.written if e.step_states == {"manual": "skipped"})
    assert skipped.events[0].step_id == "manual"
    assert [[b.step_id for b in asked] for asked in run.decider.asked] == [["stuck", "manual"], ["stuck", "manual"], ["stuck"]]
    assert run.engine.progress.run_status == "succeeded"  # no step named: the retry was the first blocked one's


LEFT = "project: p\nsteps:\n  - {id: a, run: 'true'}\n  - {id: b, run: 'make'}\n  - {id: c, run: 'true', depends_on: [b]}\n"


def test_a_command_that_ended_after_its_orchestrator_died_is_not_run_again():
    left = [LeftAttempt(step_id="b", attempt=1, exit_code=0, finished_at=utcnow(), output_tail="built\n")]
    run = scripted_run(LEFT).go(Restore(step_states={"a": "succeeded"}, left=left))
    recovered = next(e for e in run.recorder.written if e.attempts and e.attempts[0].step_id == "b")
    assert recovered.attempts[0].attempt == 1 and recovered.attempts[0].result.exit_code == 0
    assert recovered.step_states == {"b": "succeeded"} and "after its orchestrator died" in recovered.attempts[0].result.exit_reason
    assert [(a.step_id, a.attempt) for a in run.attempts] == [("b", 1), ("c", 1)]  # b is not run twice


def test_a_command_killed_on_resume_is_kept_and_runs_again_with_its_retries():
    run = scripted_run("project: p\nsteps:\n  - {id: b, run: 'make', retries: 0}\n")
    run.go(Restore(step_states={}, left=[LeftAttempt(step_id="b", attempt=1, still_running=True)]))
    killed, again = run.attempts
    assert killed.result.exit_code is None and "still running when the run was resumed" in killed.result.exit_reason
    assert (again.attempt, again.result.status) == (2, "succeeded")


def test_a_sandbox_that_went_away_blocks_the_run_for_a_person():
    engine = scripted_engine("project: p\nsteps:\n  - {id: a, run: 'sleep 20', retries: 3}\n  - {id: b, run: 'true'}\n")
    engine.handle(Begin())
    now = utcnow()
    lost = CommandResult(status="failed", exit_code=None, exit_reason="the sandbox container stopped", started_at=now,
                         finished_at=now, sandbox_lost=True)  # fmt: skip
    out = engine.handle(AttemptEnded(step_id="a", attempt=1, result=lost))
    assert out.step_states == {"a": "blocked"} and not out.started  # not retried into a sandbox that is gone; b waits too
    (blocked,) = [e for e in out.events if isinstance(e, RunBlocked)]
    assert blocked.reason == "sandbox" and "autodev resume run-1 --action retry" in blocked.suggested_action
