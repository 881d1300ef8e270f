"""Agent steps continue their CLI's session, in milliseconds: the real loop and engine driven by
the scripted executor. A stall, a provider's limit, a dead orchestrator or a failed check's
feedback continue the session the agent named (Codex `exec resume`, Claude Code `--resume`) with
a word on why; a session the CLI no longer knows starts a new one at once, with nothing spent;
the log says which happened, and the advice counts the resumes."""

from __future__ import annotations

import json

from autodev.core.engine.inputs import Restore
from autodev.core.engine.resumes import resumes_of
from autodev.core.insights import advise
from autodev.core.models import GitState, utcnow
from autodev.core.session import CliSession, LeftAttempt, SessionMetadata
from autodev.testing import FixedClock, Scripted, scripted_engine, scripted_run

PLAN = """
project: p
agent: {agent}
defaults: {{max_stall_retries: 2, retries: 0}}
steps:
  - {{id: greet, kind: agent, instruction: "Create hello.txt that says hello."}}
  - {{id: check, run: "grep -q hello hello.txt", depends_on: [greet], feedback_to: greet}}
"""
CODEX = "codex exec"


def commands(run) -> list[str]:
    return [spec.command for spec in run.executor.started if spec.step.id == "greet"]


def notes(run) -> list[str]:
    return [note.text for written in run.recorder.written for note in written.notes]


def test_a_stalled_round_is_continued_in_its_session_with_why():
    run = scripted_run(PLAN.format(agent="codex"), {CODEX: [Scripted("stalled", 137, "...", session="0199-thread"), Scripted(session="0199-thread")]})
    run.go()
    first, second = commands(run)
    assert first.startswith("codex exec --json") and "Create hello.txt" in first
    assert second.startswith("codex exec --json") and " resume 0199-thread " in second
    assert "You were interrupted before you finished: you showed no progress for too long" in second
    assert "Create hello.txt" not in second  # the task is in the session already
    assert "step greet attempt 2: continues codex session 0199-thread (you showed no progress" in " ".join(notes(run))
    assert run.engine.progress.run_status == "succeeded" and resumes_of(run.engine.state.doc.cli_sessions) == {"greet": 1}


def test_a_failed_checks_evidence_goes_to_the_same_session():
    script = {CODEX: [Scripted(session="s-1"), Scripted(session="s-1")], "grep": [Scripted("failed", 1, "no hello here\n")]}
    run = scripted_run(PLAN.format(agent="claude").replace(CODEX, "claude"), {"claude": script[CODEX], "grep": script["grep"]})
    run.go()
    first, second = commands(run)
    assert first.startswith("claude -p") and "--resume" not in first
    assert "--resume s-1 " in second and "Your edits did not pass a check" in second and "no hello here" in second


def test_a_round_that_finished_well_starts_its_next_unasked_round_afresh():
    engine = scripted_engine(PLAN.format(agent="codex"))
    run = scripted_run(engine, {CODEX: [Scripted(session="s-1")]}).go()
    assert engine.state.doc.cli_sessions["greet"].why is None and engine._to_continue(engine.plan.step("greet"), None) is None
    assert len(commands(run)) == 1


def test_a_session_the_cli_does_not_know_starts_a_new_one_at_once_with_nothing_spent():
    refused = Scripted("failed", 1, "Error: thread/resume failed: no rollout found for thread id s-1\n")  # no session opened
    script = {CODEX: [Scripted("stalled", 137, session="s-1"), refused, Scripted(session="s-2")]}
    run = scripted_run(PLAN.format(agent="codex").replace("max_stall_retries: 2", "max_stall_retries: 1"), script)
    run.go()
    _, resumed, fresh = commands(run)
    assert " resume s-1 " in resumed and " resume " not in fresh and "Create hello.txt" in fresh
    said = " ".join(notes(run))
    assert "its codex session s-1 could not be continued (Error: thread/resume failed: no rollout found" in said
    assert "step greet attempt 3: a new codex session" in said
    assert run.engine.progress.run_status == "succeeded" and run.engine.state.breaker.count == 0
    assert run.engine.state.doc.cli_sessions["greet"].id == "s-2"


def test_after_a_limit_the_round_continues_its_session():
    limited = Scripted("failed", 1, "ERROR: You've hit your usage limit. Try again in 20s.\n", session="s-1")
    engine = scripted_engine(PLAN.format(agent="codex"), clock=FixedClock())
    run = scripted_run(engine, {CODEX: [limited, Scripted(session="s-1")]}).go()
    assert "the usage or rate limit of your model provider stopped you; it has reset now" in commands(run)[1]


def test_a_dead_orchestrators_round_is_continued_from_the_session_its_log_names():
    head = json.dumps({"type": "thread.started", "thread_id": "0199-left"}) + "\n" + json.dumps({"type": "turn.started"}) + "\n"
    left = LeftAttempt(step_id="greet", attempt=1, still_running=True, output_head=head)
    run = scripted_run(PLAN.format(agent="codex"), {CODEX: [Scripted(session="0199-left")]})
    run.go(Restore(step_states={}, left=[left]))
    (again,) = commands(run)
    assert " resume 0199-left " in again and "the orchestrator running it stopped" in again


def test_a_resumed_round_that_ended_after_its_orchestrator_died_keeps_its_session():
    head = json.dumps({"type": "thread.started", "thread_id": "s-1"}) + "\n"
    doc = SessionMetadata(cli_sessions={"greet": CliSession(agent="codex", id="s-1", why="a stall", resumes=1, resumed_in=1)})
    engine = scripted_engine(PLAN.format(agent="codex").replace("retries: 0", "retries: 1"), doc=doc)
    left = LeftAttempt(step_id="greet", attempt=1, exit_code=1, finished_at=utcnow(), output_head=head)
    run = scripted_run(engine, {CODEX: [Scripted(session="s-1")]}).go(Restore(step_states={}, left=[left]))
    (again,) = commands(run)
    assert " resume s-1 " in again and "could not be continued" not in " ".join(notes(run))


def test_a_session_named_in_a_first_event_longer_than_the_logs_head_is_found():
    head = '{"type":"system","subtype":"init","session_id":"9f1c-claude","tools":["Bash","Edit","Wri'  # cut off
    run = scripted_run(PLAN.format(agent="claude"), {"claude": [Scripted(session="9f1c-claude")]})
    run.go(Restore(step_states={}, left=[LeftAttempt(step_id="greet", attempt=1, still_running=True, output_head=head)]))
    assert "--resume 9f1c-claude " in commands(run)[0]


def test_aider_has_no_session_to_continue():
    run = scripted_run(PLAN.format(agent="aider"), {"aider": [Scripted("stalled", 137), Scripted()]}).go()
    assert all("--message 'Create hello.txt" in c for c in commands(run)) and "session" not in " ".join(notes(run))


def test_the_advice_counts_the_resumes():
    run = scripted_run(PLAN.format(agent="codex"), {CODEX: [Scripted("stalled", 137, session="s"), Scripted(session="s")]}).go()
    engine = run.engine
    resumes = resumes_of(engine.state.doc.cli_sessions)
    insight = advise("run-1", engine.plan, engine.progress.status, engine.progress.attempts, [], GitState(), resumes)
    assert insight.evidence["resumed"] == {"greet": 1}
