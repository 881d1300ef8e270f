"""The run loop's behaviour, in milliseconds: the run engine driven by a scripted sandbox, with
no Docker and no Prefect. The stall ladder, the breaker, feedback rounds, stale checks, a
person's decisions, restoring a run, and what a lost orchestrator means."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from autodev.blocks.sandbox import SandboxSession
from autodev.core.events import BreakerTripped, CommandFailed, FeedbackRound, RunBlocked, RunResumed, StepStalled
from autodev.core.models import CommandRequest, CommandResult, StepAttempt, utcnow
from autodev.core.outcomes import Dispatch, Outcome, Rules
from autodev.core.plan import parse_plan
from autodev.core.recovery import orchestrator_lost
from autodev.core.run_engine import RunEngine
from autodev.core.session import Decision, Heartbeat, LeftAttempt, QueueEntry, SessionMetadata, SessionRecord


@dataclass
class Scripted:
    """What one command does in the scripted sandbox."""

    status: str = "succeeded"
    exit_code: int | None = 0
    output: str = ""


class ScriptedSandbox(SandboxSession):
    """Runs nothing: each command's next result comes from the script, by the step's command;
    a command with nothing scripted succeeds. Every request is kept."""

    def __init__(self, script: dict[str, list[Scripted]] | None = None):
        self.script = {command: list(results) for command, results in (script or {}).items()}
        self.requests: list[CommandRequest] = []

    def run(self, request: CommandRequest, on_output, on_started=None) -> CommandResult:
        self.requests.append(request)
        queue = next((results for command, results in self.script.items() if request.command.startswith(command)), [])
        scripted = queue.pop(0) if queue else Scripted()
        now = utcnow()
        on_output(scripted.output.encode())
        return CommandResult(
            status=scripted.status, exit_code=scripted.exit_code, started_at=now, finished_at=now + timedelta(seconds=1),
            output_tail=scripted.output, output_bytes=len(scripted.output),
        )

    def close(self) -> None:
        pass


@dataclass
class Drive:
    """Everything the engine answered while driven to the end."""

    outcomes: list[Outcome] = field(default_factory=list)
    timeline: list[tuple[str, str, int]] = field(default_factory=list)  # ("start" | "end", step, attempt)

    @property
    def attempts(self) -> list[StepAttempt]:
        return [o.attempt for o in self.outcomes if o.attempt is not None]

    def events(self, kind: type) -> list:
        return [e for o in self.outcomes for e in o.events if isinstance(e, kind)]

    def states(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for o in self.outcomes:
            found.update(o.step_states)
        return found


def drive(engine: RunEngine, sandbox: ScriptedSandbox, order: Callable[[list[Dispatch]], Dispatch] | None = None) -> Drive:
    """Run the engine as the plan flow does: dispatch, run one command, hand its result back;
    until nothing runs. `order` picks which running attempt ends next (default: the oldest)."""
    seen, running = Drive(), []
    while True:
        started = engine.dispatch()
        seen.outcomes.append(started)
        running += started.started
        seen.timeline += [("start", d.step.id, d.attempt) for d in started.started]
        if not running:
            return seen
        d = (order or (lambda r: r[0]))(running)
        running.remove(d)
        command = d.command or f"agent {d.step.id}"
        result = sandbox.run(CommandRequest(command=command, timeout_s=d.limits.timeout_s, stall_timeout_s=d.limits.stall_timeout_s), lambda _: None)
        outcome = engine.on_result(d.step.id, d.attempt, result)
        seen.timeline.append(("end", d.step.id, d.attempt))
        assert outcome is not None
        seen.outcomes.append(outcome)


def engine_for(plan_text: str, **rules) -> RunEngine:
    return RunEngine(parse_plan(plan_text), "run-1", "/ws", Rules(**rules), environ={})


def test_a_silent_command_is_retried_once_then_blocks_the_run_and_nothing_after_it_runs():
    engine = engine_for("""
project: p
defaults: {stall_timeout_s: 2}
steps:
  - {id: hang, run: "sleep 600"}
  - {id: after, run: "echo after", depends_on: [hang]}
""")
    seen = drive(engine, ScriptedSandbox({"sleep": [Scripted("stalled", 137, "partial\n")] * 2}))
    assert [(a.step_id, a.attempt, a.result.status) for a in seen.attempts] == [("hang", 1, "stalled"), ("hang", 2, "stalled")]
    assert seen.states() == {"hang": "blocked"} and engine.waits_for_a_person
    assert [s.stalls for s in seen.events(StepStalled)] == [1, 2]
    (blocked,) = seen.events(RunBlocked)
    assert blocked.reason == "stall" and blocked.step == "hang" and "printed nothing new for 2s" in blocked.suggested_action
    assert [b.kind for b in engine.waiting_on()] == ["stall"]
    assert engine.progress.status["after"] is None  # not skipped: a person may still retry or skip `hang`


def test_the_stall_timeout_setting_is_what_the_advice_quotes():
    engine = engine_for("project: p\nsteps:\n  - {id: hang, run: 'sleep 600', max_stall_retries: 0}\n", stall_timeout_s=2)
    (dispatch,) = engine.dispatch().started
    assert dispatch.limits.stall_timeout_s == 2
    now = utcnow()
    out = engine.on_result("hang", 1, CommandResult(status="stalled", exit_code=137, started_at=now, finished_at=now))
    (failed,) = [e for e in out.events if isinstance(e, CommandFailed)]
    assert "printed nothing new for 2s" in failed.suggested_action and "300" not in failed.suggested_action


def test_failures_use_their_retries_then_fail_the_step_and_skip_what_depends_on_it():
    engine = engine_for("""
project: p
steps:
  - {id: build, run: "make", retries: 2}
  - {id: test, run: "pytest", depends_on: [build]}
  - {id: lint, run: "ruff ."}
""")
    flaky = [Scripted("failed", 2, f"error {n}\n") for n in ("a", "b", "c")]  # three different failures
    seen = drive(engine, ScriptedSandbox({"make": flaky}))
    assert [a.attempt for a in seen.attempts if a.step_id == "build"] == [1, 2, 3]
    assert seen.states() == {"build": "failed", "test": "skipped", "lint": "succeeded"}
    assert engine.progress.run_status == "failed" and not seen.events(RunBlocked)
    assert [b.kind for b in engine.blockers] == ["failure"] * 3


def test_the_breaker_blocks_the_third_identical_failure_whatever_the_retries():
    engine = engine_for("project: p\nsteps:\n  - {id: wall, run: 'pip install requests2', retries: 5}\n")
    wall = [Scripted("failed", 1, "ModuleNotFoundError: No module named requests2\n")] * 6
    seen = drive(engine, ScriptedSandbox({"pip": wall}))
    assert [a.breaker_tripped for a in seen.attempts] == [False, False, True]
    (tripped,) = seen.events(BreakerTripped)
    assert tripped.threshold == 3 and "pip install requests2" in tripped.suggested_action
    assert [e.reason for e in seen.events(RunBlocked) if type(e) is RunBlocked] == ["breaker"]
    assert seen.states() == {"wall": "blocked"}


FEEDBACK = """
project: p
max_feedback_rounds: 2
agent_command: "agent {instruction}"
steps:
  - {id: implement, kind: agent, instruction: "write the code"}
  - {id: test, run: "pytest", depends_on: [implement], feedback_to: implement}
"""


def test_a_failed_check_sends_the_run_back_to_its_agent_with_the_evidence():
    engine = engine_for(FEEDBACK)
    sandbox = ScriptedSandbox({"pytest": [Scripted("failed", 1, "FAILED tests/test_x.py::test_y\n")]})
    seen = drive(engine, sandbox)
    assert [(a.step_id, a.attempt, a.result.status) for a in seen.attempts] == [
        ("implement", 1, "succeeded"), ("test", 1, "failed"), ("implement", 2, "succeeded"), ("test", 2, "succeeded"),
    ]
    (round_one,) = seen.events(FeedbackRound)
    assert (round_one.step, round_one.to, round_one.round, round_one.rerun) == ("test", "implement", 1, ["implement", "test"])
    second_agent = [r.command for r in sandbox.requests if r.command.startswith("agent")][1]
    assert "FAILED tests/test_x.py::test_y" in second_agent and "did not pass" in second_agent
    assert engine.progress.run_status == "succeeded" and engine.feedback_rounds == 1


def test_feedback_rounds_are_bounded_then_the_check_fails_for_good():
    engine = engine_for(FEEDBACK)
    seen = drive(engine, ScriptedSandbox({"pytest": [Scripted("failed", 1, "1 failed\n")] * 5}))
    assert len(seen.events(FeedbackRound)) == 2
    assert [a.step_id for a in seen.attempts] == ["implement", "test"] * 3
    assert engine.progress.status == {"implement": "succeeded", "test": "failed"}


def test_a_check_that_ran_on_the_old_code_is_set_aside_and_runs_again():
    engine = engine_for("""
project: p
max_parallel: 2
agent_command: "agent {instruction}"
steps:
  - {id: implement, kind: agent, instruction: "write it"}
  - {id: unit, run: "pytest unit", depends_on: [implement], feedback_to: implement}
  - {id: e2e, run: "pytest e2e", depends_on: [implement]}
""")
    sandbox = ScriptedSandbox({"pytest unit": [Scripted("failed", 1, "1 failed\n")]})
    # unit ends first and sends the run back while e2e still runs on the old code
    seen = drive(engine, sandbox, order=lambda running: next((d for d in running if d.step.id == "unit"), running[0]))
    e2e_first = next(o for o in seen.outcomes if o.attempt and o.attempt.step_id == "e2e")
    assert e2e_first.step_states == {} and e2e_first.loop_status == "set aside e2e"  # kept, not counted
    # the new round starts only once the check on the old code has ended
    assert seen.timeline.index(("end", "e2e", 1)) < seen.timeline.index(("start", "implement", 2))
    assert engine.progress.status == {"implement": "succeeded", "unit": "succeeded", "e2e": "succeeded"}


def test_retry_with_a_new_command_replaces_the_step_and_the_run_goes_on():
    engine = engine_for("""
project: p
defaults: {max_stall_retries: 0}
steps:
  - {id: stuck, run: "sleep 600"}
  - {id: after, run: "echo after", depends_on: [stuck]}
""")
    sandbox = ScriptedSandbox({"sleep": [Scripted("stalled", 137)]})
    drive(engine, sandbox)
    paused = engine.pause()
    assert paused.status == "blocked" and paused.changes.phase == "waiting for a decision on stuck"
    decided = engine.decide(Decision(action="retry", command="echo fixed", note="placeholder"))
    assert decided.status == "running" and decided.plan.step("stuck").run == "echo fixed"
    (resumed,) = [e for e in decided.events if isinstance(e, RunResumed)]
    assert (resumed.step_id, resumed.action, resumed.note) == ("stuck", "retry", "placeholder")
    assert decided.changes.interventions[0].command == "echo fixed"
    seen = drive(engine, sandbox)
    assert [(a.step_id, a.attempt, a.command) for a in seen.attempts] == [("stuck", 2, "echo fixed"), ("after", 1, "echo after")]
    assert engine.progress.run_status == "succeeded"


def test_skip_lets_the_steps_after_it_run_and_abort_runs_nothing_more():
    plan = """
project: p
steps:
  - {id: manual, kind: agent, instruction: "do it by hand"}
  - {id: check, run: "pytest", depends_on: [manual]}
  - {id: other, run: "echo other", depends_on: [manual]}
"""
    skipped = engine_for(plan)  # no model and no agent CLI: the agent step is left to a person
    first = drive(skipped, ScriptedSandbox())
    (manual,) = skipped.waiting_on()
    assert first.states() == {"manual": "blocked"} and manual.kind == "manual"
    assert "do it by hand" in manual.suggested_action
    skipped.decide(Decision(action="skip"))
    assert {a.step_id for a in drive(skipped, ScriptedSandbox()).attempts} == {"check", "other"}
    assert skipped.progress.run_status == "succeeded"  # skipped by a person: done by hand

    aborted = engine_for(plan)
    drive(aborted, ScriptedSandbox())
    out = aborted.decide(Decision(action="abort"))
    assert out.step_states == {"manual": "failed", "check": "skipped", "other": "skipped"}
    assert not drive(aborted, ScriptedSandbox()).attempts and aborted.progress.run_status == "failed"


def test_a_decision_with_no_blocked_step_goes_on_from_the_first_unfinished_one():
    # The watchdog blocked the run: no step is in the blocked state.
    engine = engine_for("project: p\nsteps:\n  - {id: a, run: 'true'}\n  - {id: b, run: 'true', depends_on: [a]}\n")
    engine.restore({"a": "succeeded"}, [])
    out = engine.decide(Decision(action="retry"))
    assert out.changes.interventions[0].step_id == "b" and out.status == "running"
    assert [a.step_id for a in drive(engine, ScriptedSandbox()).attempts] == ["b"]
    for action, status in (("skip", "succeeded"), ("abort", "failed")):
        other = engine_for("project: p\nsteps:\n  - {id: a, run: 'true'}\n  - {id: b, run: 'true', depends_on: [a]}\n")
        other.restore({"a": "succeeded"}, [])
        assert other.decide(Decision(action=action)).status == "running"
        drive(other, ScriptedSandbox())
        assert other.progress.run_status == status, action  # skip goes on; abort ends the run


def test_restore_keeps_finished_steps_counts_attempts_on_and_clears_the_old_queue():
    plan = parse_plan("project: p\nsteps:\n  - {id: a, run: 'true'}\n  - {id: b, run: 'make', retries: 1}\n")
    now = utcnow()
    old = SessionMetadata(queue=[QueueEntry(queue_id="q-dead", step_id="b", attempt=2, dispatched_at=now)])
    engine = RunEngine(plan, "run-1", "/ws", Rules(), old, environ={})
    failed = CommandResult(status="failed", exit_code=1, started_at=now, finished_at=now)
    attempts = [StepAttempt(run_id="run-1", step_id="b", attempt=n, command="make", result=failed) for n in (1, 2)]
    (restored,) = engine.restore({"a": "succeeded"}, attempts)
    assert restored.changes.dequeued == ["q-dead"]
    sandbox = ScriptedSandbox({"make": [Scripted("failed", 1, "x\n")]})
    seen = drive(engine, sandbox)
    assert [(a.step_id, a.attempt) for a in seen.attempts] == [("b", 3), ("b", 4)]  # a's done; b's retries afresh


def test_a_result_that_is_no_news_changes_nothing():
    engine = engine_for("project: p\nsteps:\n  - {id: a, run: 'true'}\n")
    engine.dispatch()
    now = utcnow()
    done = CommandResult(status="succeeded", exit_code=0, started_at=now, finished_at=now)
    assert engine.on_result("a", 1, done) is not None
    assert engine.on_result("a", 1, done) is None  # the task's own end, after its result


def test_secrets_in_a_steps_env_never_reach_what_is_stored_or_sent():
    engine = RunEngine(
        parse_plan("project: p\nsteps:\n  - {id: a, run: 'curl -H token:s3cr3t-value x', env: {API_TOKEN: s3cr3t-value}}\n"),
        "run-1", "/ws", Rules(), environ={},
    )
    engine.dispatch()
    now = utcnow()
    out = engine.on_result("a", 1, CommandResult(status="failed", exit_code=7, started_at=now, finished_at=now))
    assert "s3cr3t-value" not in repr(out) and "***" in out.attempt.command


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
    out = orchestrator_lost(session, now, containers_removed=1)
    assert out.status == "blocked" and out.changes.phase == "orchestrator lost"
    (blocker,) = out.changes.blockers
    assert blocker.kind == "watchdog" and blocker.step_id == "build" and "600s ago" in blocker.summary
    (event,) = out.events
    assert event.reason == "watchdog" and event.heartbeat_delay_s == 600 and event.containers_removed == 1


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
    engine = engine_for(KEEP_GOING)
    seen = drive(engine, ScriptedSandbox({"sleep": [Scripted("stalled", 137)]}))
    assert seen.states() == {"stuck": "blocked", "manual": "blocked", "free": "succeeded", "after-free": "succeeded"}
    assert [e.step for e in seen.events(RunBlocked)] == ["stuck", "manual"]  # each announced as it blocked
    assert engine.waits_for_a_person and engine.progress.status["after-stuck"] is None
    assert [(b.step_id, b.kind) for b in engine.waiting_on()] == [("stuck", "stall"), ("manual", "manual")]
    assert engine.pause().changes.phase == "waiting for a decision on stuck, manual"


def test_several_blocked_steps_take_one_decision_each():
    engine = engine_for(KEEP_GOING)
    drive(engine, ScriptedSandbox({"sleep": [Scripted("stalled", 137)]}))
    ignored = engine.decide(Decision(action="skip", step="free"))
    assert ignored.status is None and "not blocked" in ignored.notes[0].text
    skipped = engine.decide(Decision(action="skip", step="manual"))
    assert skipped.step_states == {"manual": "skipped"} and skipped.changes.interventions[0].step_id == "manual"
    assert engine.progress.blocked_steps == ["stuck"]  # still blocked: its own decision comes next
    engine.decide(Decision(action="retry", command="echo unstuck"))  # no step named: the first blocked one
    drive(engine, ScriptedSandbox())
    assert engine.progress.run_status == "succeeded"


def left_run(plan_text: str) -> RunEngine:
    return RunEngine(parse_plan(plan_text), "run-1", "/ws", Rules(), SessionMetadata(), environ={})


def test_a_command_that_ended_after_its_orchestrator_died_is_not_run_again():
    engine = left_run("project: p\nsteps:\n  - {id: a, run: 'true'}\n  - {id: b, run: 'make'}\n  - {id: c, run: 'true', depends_on: [b]}\n")
    now = utcnow()
    left = [LeftAttempt(step_id="b", attempt=1, exit_code=0, finished_at=now, output_tail="built\n")]
    outcomes = engine.restore({"a": "succeeded"}, [], left)
    recovered = outcomes[1]
    assert recovered.attempt.attempt == 1 and recovered.attempt.result.exit_code == 0
    assert recovered.step_states == {"b": "succeeded"} and "after its orchestrator died" in recovered.attempt.result.exit_reason
    seen = drive(engine, ScriptedSandbox())
    assert [(a.step_id, a.attempt) for a in seen.attempts] == [("c", 1)]  # b is not run twice


def test_a_command_killed_on_resume_is_kept_and_runs_again_with_its_retries():
    engine = left_run("project: p\nsteps:\n  - {id: b, run: 'make', retries: 0}\n")
    outcomes = engine.restore({}, [], [LeftAttempt(step_id="b", attempt=1, still_running=True)])
    killed = outcomes[1].attempt
    assert killed.result.exit_code is None and "still running when the run was resumed" in killed.result.exit_reason
    assert outcomes[1].step_states == {}
    seen = drive(engine, ScriptedSandbox())
    assert [(a.step_id, a.attempt, a.result.status) for a in seen.attempts] == [("b", 2, "succeeded")]


def test_a_sandbox_that_went_away_blocks_the_run_for_a_person():
    engine = engine_for("project: p\nsteps:\n  - {id: a, run: 'sleep 20', retries: 3}\n  - {id: b, run: 'true'}\n")
    engine.dispatch()
    now = utcnow()
    lost = CommandResult(status="failed", exit_code=None, exit_reason="the sandbox container stopped", started_at=now,
                         finished_at=now, sandbox_lost=True)
    out = engine.on_result("a", 1, lost)
    assert out.step_states == {"a": "blocked"}  # not retried into a sandbox that is gone
    (blocked,) = [e for e in out.events if isinstance(e, RunBlocked)]
    assert blocked.reason == "sandbox" and "autodev resume run-1 --action retry" in blocked.suggested_action
