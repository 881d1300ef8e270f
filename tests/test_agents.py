"""Agent CLIs as presets, the progress-aware stall clock and secrets, in milliseconds (no Docker,
no Prefect). The real Codex CLI runs in `tests/test_codex.py`."""

from __future__ import annotations

import shlex

import pytest

from autodev.blocks.secrets import resolve_secrets
from autodev.core.agents import AgentChoice, AgentStream, agent_template, with_agent
from autodev.core.commands import CommandResult
from autodev.core.engine.effects import Policy
from autodev.core.engine.inputs import AttemptEnded, Begin, DecisionTaken
from autodev.core.engine.machine import RunEngine
from autodev.core.errors import BadInput, EnvironmentProblem
from autodev.core.models import utcnow
from autodev.core.plan import parse_plan
from autodev.core.progress import ProgressMeter
from autodev.core.secrets import SecretNames, lift_env_secrets, secret_names
from autodev.core.session import Decision, SessionMetadata
from autodev.testing import scripted_engine

CODEX_PLAN = """
project: p
agent: codex
agent_args: "-c model=gpt-5.5"
steps:
  - {id: edit, kind: agent, instruction: "add a greeting to app.py, don't break it"}
  - {id: test, run: pytest, depends_on: [edit]}
"""

# What Codex 0.171.0 printed (`codex exec --json`) against a scripted model server.
CODEX_WORKS = [
    '{"type":"thread.started","thread_id":"0199a213-81c0-7800-8aa1-bbab2a035a53"}',
    '{"type":"turn.started"}',
    '{"type":"item.started","item":{"id":"item_0","type":"command_execution","command":"bash -lc \'echo hi > a\'","status":"in_progress"}}',
    '{"type":"item.completed","item":{"id":"item_1","type":"file_change","changes":[{"path":"/workspace/app.py","kind":"update"}]}}',
    '{"type":"item.completed","item":{"id":"item_2","type":"agent_message","text":"done"}}',
    '{"type":"turn.completed","usage":{"input_tokens":200,"cached_input_tokens":0,"output_tokens":20}}',
]
CODEX_RECONNECTING = [
    f'{{"type":"error","message":"Reconnecting... {n}/5 (stream disconnected before completion: idle timeout waiting for SSE)"}}'
    for n in range(1, 6)
]


def test_a_preset_runs_the_agent_unattended_with_the_instruction_quoted_once():
    plan = parse_plan(CODEX_PLAN)
    (started,) = scripted_engine(plan).handle(Begin()).started
    words = shlex.split(started.command)
    assert words[:2] == ["codex", "exec"] and "--json" in words and "--skip-git-repo-check" in words
    assert "--dangerously-bypass-approvals-and-sandbox" in words and words[-3:-1] == ["-c", "model=gpt-5.5"]
    assert words[-1] == "add a greeting to app.py, don't break it"
    assert started.agent_stream == "codex"
    assert started.limits.stall_timeout_s == 600  # the preset's, coordinated with Codex's own idle timeout


def test_the_stall_timeout_a_person_set_wins_over_the_presets():
    explicit = parse_plan(CODEX_PLAN.replace("agent_args", "defaults: {stall_timeout_s: 45}\nagent_args"))
    assert scripted_engine(explicit).handle(Begin()).started[0].limits.stall_timeout_s == 45
    from_env = scripted_engine(CODEX_PLAN, Policy(stall_timeout_s=7))
    assert from_env.handle(Begin()).started[0].limits.stall_timeout_s == 7


def test_a_steps_own_agent_command_wins_over_the_plans_preset():
    plan = parse_plan(CODEX_PLAN.replace('instruction: "add', 'agent_command: "my-agent {instruction}", instruction: "add'))
    assert agent_template(plan, plan.step("edit")) == "my-agent {instruction}"
    assert scripted_engine(plan).handle(Begin()).started[0].agent_stream is None


def test_the_runs_agent_takes_every_agent_step_and_leaves_commands_alone():
    plan = parse_plan(
        CODEX_PLAN.replace('instruction: "add', 'agent_command: "my-agent {instruction}", instruction: "add')
        + '  - {id: docs, kind: agent, agent: aider, instruction: "document it", depends_on: [test]}\n'
    )
    chosen = with_agent(plan, AgentChoice(name="claude", args="--model opus", image="sandbox-claude:1", network="host"))
    started = scripted_engine(chosen).handle(Begin()).started[0]
    assert shlex.split(started.command)[:2] == ["claude", "-p"] and "--model" in started.command
    assert [agent_template(chosen, step) is not None for step in chosen.steps] == [True, False, True]
    assert agent_template(chosen, chosen.step("docs")).startswith("claude -p")  # the step's own aider gave way
    assert chosen.step("test").command == "pytest"
    assert (chosen.image, chosen.network) == ("sandbox-claude:1", "host")  # the CLI's image; it reaches its model
    on_a_network = with_agent(parse_plan(CODEX_PLAN + "network: build-net\n"), AgentChoice(name="codex"))
    assert on_a_network.network == "build-net" and on_a_network.image is None  # the plan's own stay


@pytest.mark.parametrize(
    ("step", "problem"),
    [
        ("{id: e, kind: agent, instruction: x, agent: codex, agent_command: 'x {instruction}'}", "not both"),
        ("{id: e, kind: agent, instruction: x, agent_args: '-m o3'}", "`agent_args` goes with `agent`"),
        ("{id: e, kind: agent, instruction: x, agent: cursor}", "codex"),
        ("{id: e, run: make, agent: codex}", "belong to steps of kind agent"),
    ],
)
def test_a_misconfigured_agent_step_is_refused_with_the_reason(step, problem):
    with pytest.raises(BadInput, match=problem):
        parse_plan(f"project: p\nsteps:\n  - {step}\n")


def test_the_same_line_again_is_no_progress_and_a_counter_that_advances_is():
    meter = ProgressMeter()
    seen = [meter.feed(line.encode()) for line in ("Reconnecting... 1/5\n", "Reconnecting... 1/5\n", "Reconn", "ecting... 1/5\n")]
    assert seen == [True, False, False, False]
    assert meter.feed(b"Connected: 12 files\n")  # something new
    ticks = ProgressMeter()
    assert all(ticks.feed(f"tick-{i}\n".encode()) for i in range(1, 15))  # the counter: healthy
    build = ProgressMeter()
    assert all(build.feed(f"[{i:3}/300] Compiling\n".encode()) for i in range(1, 30))
    assert all(build.feed(f"Epoch {i}/10\n".encode()) for i in range(1, 11))


def test_numbers_that_go_back_clock_times_and_retries_are_no_progress():
    countdown = ProgressMeter()
    assert [countdown.feed(f"starts in {n}s\n".encode()) for n in (5, 4, 3)] == [True, False, False]
    retries = ProgressMeter()  # advancing, but saying it waits or tries again
    assert [retries.feed(f"Reconnecting... {n}/5\n".encode()) for n in (1, 2, 3)] == [True, False, False]
    assert [retries.feed(f"Retrying in {n} seconds...\n".encode()) for n in (1, 2, 4)] == [True, False, False]
    assert [retries.feed(f"Reconnecting... {n}/5\n".encode()) for n in (4, 5)] == [False, False]
    stamped = ProgressMeter()  # a stuck server logging with the time: clock times are no progress, alone or in turns
    seen = [stamped.feed(f"[12:00:{s:02}] {what}\n".encode()) for s in range(40) for what in ("GET /health 200", "watching...")]
    assert seen[:2] == [True, True] and not any(seen[2:])
    dated = ProgressMeter()
    assert [dated.feed(f"2026-12-0{d}T03:00:0{d}Z tick\n".encode()) for d in (1, 2)] == [True, False]
    interleaved = ProgressMeter()  # other lines between them: a job's steps, each advancing, for as long as they go
    assert all(interleaved.feed(line) for i in range(400) for line in (f"step {i} ok\n".encode(), f"wrote {i}\n".encode()))


def test_a_spinner_is_not_progress_and_a_growing_line_is():
    spinner = ProgressMeter()
    assert [spinner.feed(frame) for frame in (b"|\r", b"/\r", b"-\r", b"|\r", b"/\r", b"-\r")][3:] == [False] * 3
    dots = ProgressMeter()
    assert all(dots.feed(chunk) for chunk in (b"tests/test_a.py ", b".", b".", b"F", b"\n"))


def test_codex_events_decide_progress_and_carry_the_rounds_evidence():
    stream = AgentStream("codex")
    meter = ProgressMeter(stream)
    assert all(meter.feed(f"{line}\n".encode()) for line in CODEX_WORKS)
    assert not any(meter.feed(f"{line}\n".encode()) for line in CODEX_RECONNECTING)  # each line differs, yet no progress
    report = stream.report
    assert (report.input_tokens, report.output_tokens, report.last_message) == (200, 20, "done")
    assert report.files_changed == ["app.py"] and report.errors[-1].startswith("Reconnecting... 5/5")
    assert report.commands == 0  # the command was started; only a completed one counts
    assert report.session_id == "0199a213-81c0-7800-8aa1-bbab2a035a53"  # its thread: a retry continues it


def test_claude_code_stream_json_gives_cost_files_and_result():
    stream = AgentStream("claude")
    lines = [
        '{"type":"system","subtype":"init","session_id":"s"}',
        '{"type":"assistant","message":{"content":[{"type":"tool_use","name":"Edit","input":{"file_path":"/workspace/app.py"}}]}}',
        '{"type":"result","subtype":"success","is_error":false,"result":"Added it.","total_cost_usd":0.0123,'
        '"usage":{"input_tokens":900,"output_tokens":80}}',
    ]
    assert all(stream.feed(line) for line in lines)
    assert stream.report.model_dump(include={"cost_usd", "files_changed", "last_message", "input_tokens"}) == {
        "cost_usd": 0.0123, "files_changed": ["app.py"], "last_message": "Added it.", "input_tokens": 900,
    }
    assert stream.report.session_id == "s"
    refused = AgentStream("claude")  # what it prints for a session it does not know: a result, and no session opened
    refused.feed('{"type":"result","subtype":"error_during_execution","is_error":true,"session_id":"gone","errors":["No conversation found"]}')
    assert refused.report.session_id is None


def test_an_agent_rounds_tokens_are_recorded_and_a_round_that_changed_nothing_is_noted():
    engine = scripted_engine(CODEX_PLAN)
    engine.handle(Begin())
    stream = AgentStream("codex")
    stream.feed(CODEX_WORKS[-1])
    now = utcnow()
    result = CommandResult(status="succeeded", exit_code=0, started_at=now, finished_at=now, agent=stream.report)
    out = engine.handle(AttemptEnded(step_id="edit", attempt=1, result=result))
    (call,) = out.model_calls
    assert (call.purpose, call.model, call.tokens) == ("agent:edit", "codex cli", 220)
    assert any("changed nothing" in note.text for note in out.notes)


def test_secret_values_in_env_are_lifted_out_of_the_plan():
    plan = parse_plan(
        "project: p\nsteps:\n  - {id: a, run: 'true', env: {OPENAI_API_KEY: sk-live-123456, MODE: fast}}\n"
        "  - {id: b, run: 'true', env: {OPENAI_API_KEY: sk-live-123456}}\n"
    )
    lifted = lift_env_secrets(plan)
    assert lifted.values == {"OPENAI_API_KEY": "sk-live-123456"} and lifted.plan.secrets == ["OPENAI_API_KEY"]
    assert "sk-live" not in lifted.plan.model_dump_json() and lifted.plan.step("a").env == {"MODE": "fast"}
    clash = plan.model_copy(update={"steps": [plan.steps[0], plan.steps[1].model_copy(update={"env": {"OPENAI_API_KEY": "other-value"}})]})
    with pytest.raises(BadInput, match="two different values"):
        lift_env_secrets(clash)


def test_a_steps_environment_gets_the_plans_secrets_and_its_agents_keys_and_masks_them():
    plan = parse_plan(CODEX_PLAN.replace("agent: codex", "agent: codex\nsecrets: [GH_PAT]"))
    assert secret_names(plan) == SecretNames(required=["GH_PAT"], optional=["OPENAI_API_KEY", "CODEX_API_KEY"])
    values = resolve_secrets(secret_names(plan), {"GH_PAT": "ghp_abcdef123", "OPENAI_API_KEY": "sk-xyz-98765"}, blocks=False)
    (edit,) = scripted_engine(plan, secrets=values).handle(Begin()).started
    assert edit.env == {"GH_PAT": "ghp_abcdef123", "OPENAI_API_KEY": "sk-xyz-98765"}
    assert edit.redactor.text("echo ghp_abcdef123 sk-xyz-98765") == "echo *** ***"


def test_a_missing_secret_is_an_environment_problem_naming_it_and_the_fix():
    with pytest.raises(EnvironmentProblem, match="GH_PAT is not set") as caught:
        resolve_secrets(SecretNames(required=["GH_PAT"], optional=[]), {}, blocks=False)
    assert "export GH_PAT=" in caught.value.fix and "'gh-pat'" in caught.value.fix


@pytest.mark.parametrize(("network", "kept"), [("true", True), ("host", "host"), ("build-net", "build-net"), ("none", False)])
def test_a_plans_network_is_none_the_default_bridge_host_or_a_named_one(network, kept):
    assert parse_plan(f"project: p\nnetwork: {network}\nsteps:\n  - {{id: a, run: 'true'}}\n").network == kept


BUDGET_PLAN = """
project: p
agent: codex
budget: {tokens: 1000}
steps:
  - {id: edit, kind: agent, instruction: do it, budget: {tokens: 300}}
  - {id: test, run: pytest, depends_on: [edit], feedback_to: edit}
"""


def agent_round(engine: RunEngine, step_id: str, attempt: int, tokens: int, status: str = "succeeded"):
    report = AgentStream("codex").report.model_copy(update={"input_tokens": tokens, "commands": 1})
    now = utcnow()
    result = CommandResult(status=status, exit_code=0 if status == "succeeded" else 1, started_at=now, finished_at=now, agent=report)
    return engine.handle(AttemptEnded(step_id=step_id, attempt=attempt, result=result))


def test_a_step_whose_budget_is_spent_blocks_for_a_person_with_the_figures_and_retry_grants_more():
    engine = scripted_engine(BUDGET_PLAN)
    engine.handle(Begin())
    agent_round(engine, "edit", 1, 350)
    held = agent_round(engine, "test", 1, 0, status="failed")  # sends the run back to edit, whose budget is spent
    assert engine.state.doc.spent["edit"].tokens == 350
    assert not held.started and held.step_states["edit"] == "blocked"
    blocker = engine.state.doc.blockers[-1]
    assert blocker.kind == "budget" and "step edit's budget is spent: 350 tokens of 300" in blocker.summary
    assert "--step edit --action retry" in blocker.suggested_action
    decided = engine.handle(DecisionTaken(decision=Decision(action="retry", step="edit")))
    assert [s.step.id for s in decided.started] == ["edit"]  # one more budget's worth (600)


def test_the_runs_budget_stops_every_step_and_survives_a_restart():
    plan = parse_plan(BUDGET_PLAN.replace("budget: {tokens: 300}", "budget: {tokens: 5000}"))
    engine = scripted_engine(plan)
    engine.handle(Begin())
    held = agent_round(engine, "edit", 1, 1200)
    assert held.step_states["test"] == "blocked"
    assert "the run's budget is spent: 1,200 tokens of 1,000" in engine.state.doc.blockers[-1].summary
    again = scripted_engine(plan, doc=SessionMetadata(spent=engine.state.doc.spent))
    assert again.budget.over(plan.step("test"), utcnow()) is not None


def test_a_feedback_loop_whose_agent_changes_nothing_new_trips_the_breaker():
    plan = parse_plan(
        "project: p\nagent: codex\nmax_feedback_rounds: 5\nsteps:\n  - {id: edit, kind: agent, instruction: fix it}\n"
        "  - {id: test, run: pytest, depends_on: [edit], feedback_to: edit}\n"
    )
    engine = scripted_engine(plan, Policy(breaker_threshold=3))
    engine.handle(Begin())
    now = utcnow()
    failing = CommandResult(status="failed", exit_code=1, started_at=now, finished_at=now, output_tail="FAILED t.py::x\n")
    outcomes = []
    for attempt, digest in enumerate(["3f2a", "", "3f2a"], start=1):  # new, nothing, the first round's change again
        done = CommandResult(status="succeeded", exit_code=0, started_at=now, finished_at=now, round_digest=digest)
        engine.handle(AttemptEnded(step_id="edit", attempt=attempt, result=done))
        outcomes.append(engine.handle(AttemptEnded(step_id="test", attempt=attempt, result=failing)))
    assert [o.step_states.get("test") for o in outcomes[:2]] == ["pending", "pending"]  # sent back to edit
    assert outcomes[2].step_states == {"test": "blocked"} and engine.state.doc.blockers[-1].kind == "breaker"


AIDER_WORKS = """Aider v0.86.2
Model: openai/gpt-4o-mini with whole edit format
Tokens: 834 sent, 8 received. Cost: $0.00013 message, $0.00013 session.
hello.py
Applied edit to hello.py
Tokens: 2.7k sent, 19 received. Cost: $0.00041 message, $0.00054 session.
"""


def test_aiders_lines_give_its_edits_tokens_and_cost():
    stream = AgentStream("aider")
    meter = ProgressMeter(stream)
    assert all(meter.feed(f"{line}\n".encode()) for line in AIDER_WORKS.splitlines())
    assert stream.report.model_dump(include={"files_changed", "input_tokens", "output_tokens", "cost_usd"}) == {
        "files_changed": ["hello.py"], "input_tokens": 3534, "output_tokens": 27, "cost_usd": 0.00054,
    }


def test_an_agent_that_exits_0_after_provider_errors_having_changed_nothing_failed():
    from autodev.core.engine.judge import judge

    stream = AgentStream("aider")
    for line in ("litellm.AuthenticationError: AuthenticationError: OpenAIException - Incorrect", "API key provided"):
        stream.feed(line)
    now = utcnow()
    result = CommandResult(status="succeeded", exit_code=0, started_at=now, finished_at=now, agent=stream.report)
    plan = parse_plan("project: p\nagent: aider\nsteps:\n  - {id: e, kind: agent, instruction: x}\n")
    judged = judge(plan.step("e"), result)
    assert judged.status == "failed" and "reported errors and changed nothing" in judged.exit_reason


@pytest.mark.parametrize(
    ("tail", "advice"),
    [
        ("Error: stdin is not a terminal\n", "wants a terminal"),
        ('{"type":"error","message":"unexpected status 401 Unauthorized: Incorrect API key provided."}\n', "refused its credentials"),
        ("API Error: Request rejected (429) · rate limited\n", "rate-limited"),
        ('{"type":"error","message":"Reconnecting... waiting for network (Connection failed: error sending request)"}\n', "could not reach"),
    ],
)
def test_the_advice_tells_an_agents_troubles_apart(tail, advice):
    from autodev.core.diagnosis import diagnose

    now = utcnow()
    result = CommandResult(status="failed", exit_code=1, started_at=now, finished_at=now, output_tail=tail)
    assert advice in diagnose("agent: do it", result).suggested_action
    assert advice not in diagnose("make", result).suggested_action  # a command step's output is not an agent's
