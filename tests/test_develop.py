"""Requirements to a finished project, for real: decompose, scaffold, agent steps in the sandbox,
the project's own tests judging them, and a failed check sending the run back with its evidence."""

from __future__ import annotations

from pathlib import Path

import git
import httpx
import pytest

from autodev.core.errors import RunFailed
from tests.helpers import autodev_events, run, store
from tests.test_cli import autodev, write

pytestmark = [pytest.mark.slow, pytest.mark.docker]

WEATHER = "docs/weather_bot_requirements.md"
WEATHER_REPLAY = "examples/replay/weather-bot.yaml"


def test_weather_bot_end_to_end_with_one_feedback_round(prefect_api, docker_engine, tmp_path):
    from autodev.flows.develop import develop

    workspace = tmp_path / "weather"
    state = develop(requirements=WEATHER, workspace=str(workspace), replay=WEATHER_REPLAY, return_state=True)
    report = state.result()
    assert report.status == "succeeded", report
    assert [(s.id, s.status, s.attempts) for s in report.steps] == [
        ("check-scaffold", "succeeded", 1),
        ("implement", "succeeded", 2),  # the second attempt saw the failed tests
        ("test", "succeeded", 2),
        ("demo", "succeeded", 1),
    ]
    assert "13 passed" in report.steps[2].output_tail
    assert "Berlin, 2026-11-25: rain, 2°C to 7°C, 3.1 mm of rain. Take an umbrella." in report.steps[3].output_tail
    assert_the_failed_tests_went_back_to_the_agent(report.run_id)
    assert_each_agent_round_is_one_commit_after_the_scaffold(workspace)
    assert_prefect_shows_the_feedback_round_and_the_evaluation(prefect_api, report.run_id)

    out = tmp_path / "report.md"
    result = autodev("report", "--output", str(out))
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "| weather-bot | 1 | 1 (100%) | 100% |" in text and "### weather-bot (succeeded" in text


def assert_the_failed_tests_went_back_to_the_agent(run_id: str) -> None:
    """The store: the first test attempt failed, the agent's second round saw why, and the session
    keeps the round, its evidence, the files left to do and the model calls."""
    s = store()
    session = s.sessions.get(run_id)
    attempts = s.attempts.of(run_id)
    usage = s.attempts.model_calls(run_id)
    s.close()
    first_test = next(a for a in attempts if a.step_id == "test" and a.attempt == 1)
    assert first_test.result.status == "failed" and "FAILED tests/test_message.py" in first_test.result.output_tail
    second_agent = next(a for a in attempts if a.step_id == "implement" and a.attempt == 2)
    assert "round halves away from zero" in second_agent.result.output_tail  # the answer only evidence unlocks
    assert "weather_bot/client.py" not in second_agent.result.output_tail  # the stat of this round's commit only
    meta = session.metadata
    assert meta.feedback_rounds == 1 and meta.origin.source == "replay" and meta.origin.template == "weather-bot"
    assert meta.todo_files == ["weather_bot/client.py", "weather_bot/message.py"]  # kept for a continued run
    assert "FAILED tests/test_message.py" in meta.evidence["implement"]
    assert [u.purpose for u in usage] == ["decompose", "agent:implement", "agent:implement"]
    assert meta.evaluation.feedback_rounds == 1 and meta.evaluation.model_calls == 3 and meta.evaluation.success_rate == 1


def assert_each_agent_round_is_one_commit_after_the_scaffold(workspace: Path) -> None:
    repo = git.Repo(workspace)
    repo.git.set_persistent_git_options(c="safe.directory=*")  # the sandbox user owns the workspace now
    first_commit = list(repo.iter_commits())[-1]
    assert first_commit.message.startswith("scaffold weather-bot from template weather-bot")
    assert "TODO(autodev)" in first_commit.tree["weather_bot/client.py"].data_stream.read().decode()
    assert "TODO(autodev)" not in (workspace / "weather_bot" / "client.py").read_text()
    agent_commits = [c.message.strip() for c in repo.iter_commits()][:-1]  # each agent round is one commit
    assert agent_commits == [
        "implement: round halves away from zero: Python's round() rounds 18.5 to 18 and -4.5 to -4",
        "implement: fetch_forecast with urllib and WeatherAPIError for every failure; daily_message with round()",
    ]


def assert_prefect_shows_the_feedback_round_and_the_evaluation(prefect_api: str, run_id: str) -> None:
    """One autodev.feedback.round event back to `implement`; the plan and evaluation artifacts."""
    events = autodev_events(prefect_api, run_id)
    rounds = [e for e in events if e["event"] == "autodev.feedback.round"]
    assert len(rounds) == 1 and rounds[0]["payload"]["to"] == "implement" and rounds[0]["payload"]["round"] == 1
    artifacts = httpx.post(f"{prefect_api}/artifacts/latest/filter", json={"artifacts": {"key": {"like_": "weather-bot"}}}).json()
    keys = {a["key"] for a in artifacts}
    assert {"plan-weather-bot", "evaluation-weather-bot"} <= keys
    evaluation = next(a for a in artifacts if a["key"] == "evaluation-weather-bot")["data"]
    assert "| 100% |" in evaluation and "Plan from: replay" in evaluation


AGENT_CLI_PLAN = """
project: cli-agent
max_feedback_rounds: {rounds}
steps:
  - id: code
    kind: agent
    instruction: Write the answer.
    agent_command: "printf '%s' {{instruction}} > instruction.txt; echo wrote instruction.txt"
  - id: check
    run: "{check}"
    depends_on: [code]
    feedback_to: code
"""


def test_an_external_agent_cli_gets_the_failure_evidence_on_the_next_round(prefect_api, docker_engine, tmp_path):
    _, report = run(AGENT_CLI_PLAN.format(rounds=2, check="grep -q Evidence instruction.txt"), tmp_path)
    assert report.status == "succeeded"
    assert [(s.id, s.attempts) for s in report.steps] == [("code", 2), ("check", 2)]
    saw = (tmp_path / "instruction.txt").read_text()
    assert saw.startswith("Write the answer.\n\nYour previous attempt did not pass.")
    assert "Check `check` (`grep -q Evidence instruction.txt`) failed with exit code 1" in saw


def test_checks_running_beside_a_failed_one_run_again_on_the_new_code(prefect_api, docker_engine, tmp_path):
    plan = """
project: parallel-checks
max_parallel: 2
steps:
  - id: code
    kind: agent
    instruction: Write the answer.
    agent_command: "printf '%s' {instruction} > instruction.txt"
  - id: quick-check
    run: "grep -q Evidence instruction.txt"
    depends_on: [code]
    feedback_to: code
  - id: slow-check
    run: "sleep 2; grep -c Evidence instruction.txt || true"
    depends_on: [code]
"""
    _, report = run(plan, tmp_path)
    steps = {s.id: s for s in report.steps}
    assert report.status == "succeeded"
    assert steps["code"].attempts == 2 and steps["quick-check"].attempts == 2
    assert steps["slow-check"].attempts == 2  # its first result was on the old code: it ran again
    assert int(steps["slow-check"].output_tail.strip()) > 0  # and its last run saw the new instruction


def test_feedback_rounds_are_bounded(prefect_api, docker_engine, tmp_path):
    state, report = run(AGENT_CLI_PLAN.format(rounds=1, check="test -f never-written.txt"), tmp_path)
    assert isinstance(state.result(raise_on_failure=False), RunFailed)
    assert report.status == "failed"
    assert [(s.id, s.status, s.attempts) for s in report.steps] == [("code", "succeeded", 2), ("check", "failed", 2)]


def test_without_a_model_the_template_plan_waits_for_confirmation(prefect_api, docker_engine, tmp_path):
    workspace = tmp_path / "ws"
    result = autodev("run", WEATHER, "--workspace", str(workspace))
    assert result.returncode == 3, result.stderr
    assert "nobody confirmed the template's plan within 1s; run again with --yes" in result.stderr
    assert not workspace.exists()  # nothing scaffolded, nothing run


def test_without_a_model_a_person_does_the_agent_step_and_the_tests_judge_it(prefect_api, docker_engine, tmp_path):
    import json

    import yaml

    workspace = tmp_path / "ws"
    result = autodev("run", WEATHER, "--workspace", str(workspace), "--yes", "--json")
    assert result.returncode == 3, result.stderr  # blocked: waiting for a person to do `implement`
    report = json.loads(result.stdout)
    assert [(s["id"], s["status"]) for s in report["steps"]] == [
        ("check-scaffold", "succeeded"), ("implement", "blocked"), ("test", "pending"), ("demo", "pending")
    ]
    status = autodev("status", report["run_id"])
    assert "blocked at implement (manual): no coding agent for this step" in status.stdout
    assert "do it by hand: Implement the Weather Bot" in status.stdout
    assert report["next_actions"] and "nothing to do yet" not in report["next_actions"][0]  # the advice saw the block

    # The person writes the code (here: the stored answers' final files), then says the step is done.
    answers = yaml.safe_load(Path(WEATHER_REPLAY).read_text())["responses"]
    for answer in answers[1:]:
        for edit in answer["json"]["edits"]:
            (workspace / edit["path"]).write_text(edit["content"])
    resumed = autodev("resume", report["run_id"], "--action", "skip", "--note", "written by hand", "--json")
    assert resumed.returncode == 0, resumed.stderr
    final = json.loads(resumed.stdout)
    assert [(s["id"], s["status"]) for s in final["steps"]] == [
        ("check-scaffold", "succeeded"), ("implement", "skipped"), ("test", "succeeded"), ("demo", "succeeded")
    ]
    assert final["interventions"] == 1


def test_bad_requirements_exit_2_before_anything_runs(tmp_path):
    bad = write(tmp_path / "req.md", "---\ntemplate: no-such-template\n---\n# Thing\n")
    result = autodev("run", str(bad), "--workspace", str(tmp_path / "ws"))
    assert result.returncode == 2 and "no template 'no-such-template'" in result.stderr
    assert autodev("plan", str(tmp_path / "missing.md")).returncode == 2
    taken = tmp_path / "taken"
    taken.mkdir()
    write(taken / "notes.txt", "mine")
    refused = autodev("run", WEATHER, "--workspace", str(taken))
    assert refused.returncode == 2 and "is not empty (notes.txt)" in refused.stderr
    assert (taken / "notes.txt").read_text() == "mine"


def test_the_nightly_suite_develops_three_projects_and_a_task_in_a_repository(prefect_api, docker_engine, tmp_path):
    from autodev.flows.experiments import SUITE, nightly_experiments

    state = nightly_experiments(workspace_root=str(tmp_path / "night"), return_state=True)
    run_ids = state.result()
    assert len(run_ids) == len(SUITE) == 4
    s = store()
    sessions = [s.sessions.get(r) for r in run_ids]
    s.close()
    assert [x.project for x in sessions] == ["weather-bot", "word-stats", "unit-convert", "shelf-tasks"]
    assert all(x.status == "succeeded" for x in sessions)
    assert [x.metadata.feedback_rounds for x in sessions] == [1, 1, 1, 0]
    assert sessions[3].metadata.repository.branch.startswith("autodev/shelf-tasks-")
    artifacts = httpx.post(f"{prefect_api}/artifacts/latest/filter", json={"artifacts": {"key": {"any_": ["nightly-report"]}}}).json()
    report = artifacts[0]["data"]
    for project in ("weather-bot", "word-stats", "unit-convert", "shelf-tasks"):
        assert f"| {project} | 1 | 1 (100%) | 100% |" in report


def test_the_develop_flow_also_runs_an_explicit_plan(prefect_api, docker_engine, tmp_path):
    from autodev.core.errors import BadInput
    from autodev.core.plan import parse_plan
    from autodev.flows.develop import develop

    plan = parse_plan("project: given\nsteps:\n  - {id: hello, run: 'echo given > out.txt'}\n")
    report = develop(plan=plan, workspace=str(tmp_path / "ws"), return_state=True).result()
    assert report.status == "succeeded" and (tmp_path / "ws" / "out.txt").read_text() == "given\n"
    with pytest.raises(BadInput, match="either `requirements`"):
        develop(requirements=WEATHER, plan=plan)
