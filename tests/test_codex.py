"""Real Codex CLI (npm `@openai/codex` 0.171.0, in `autodev image build --agent codex`'s image)
as a plan's agent step, against a scripted Responses-API server on the host's loopback
(`tests/scripted_responses.py`), through `autodev exec` as a user runs it.

The sandbox reaches the server with `network: host`, which works on an engine started with
--bridge=none; a plan with no network shows what a model out of reach looks like.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from autodev.core.settings import load_settings
from tests.helpers import AUTODEV, exec_json, store
from tests.scripted_responses import ScriptedResponses, codex_config_args, http_error, message, shell, silent

pytestmark = [pytest.mark.slow, pytest.mark.docker]
SECRET = "sk-scripted-7f3a9c21d4e8"  # the API key: it must appear nowhere autodev keeps or sends things


@pytest.fixture(scope="session")
def codex_image(agent_image) -> str:
    return agent_image("codex")


def codex_plan(image: str, model: ScriptedResponses, network: str = "host", **config) -> dict:
    args = " ".join(shlex.quote(a) for a in codex_config_args(model.base_url, **config))
    plan = {
        "project": "codex",
        "image": image,
        "network": network if network != "false" else False,
        "agent": "codex",
        "agent_args": args,
        "secrets": ["SCRIPTED_API_KEY"],
        "defaults": {"stall_timeout_s": 6, "max_stall_retries": 0},
        "steps": [
            {"id": "greet", "kind": "agent", "instruction": "Create hello.txt that says hello."},
            {"id": "check", "run": "grep -q hello hello.txt", "depends_on": ["greet"]},
        ],
    }
    return plan


def exec_plan(plan: dict, workspace: Path, env_key: str | None = SECRET) -> tuple[subprocess.CompletedProcess, dict]:
    env = {k: v for k, v in os.environ.items() if k != "SCRIPTED_API_KEY"}
    env["PREFECT_LOGGING_LEVEL"] = "INFO"  # every line reaches the Prefect server, where the key must not be
    return exec_json(plan, workspace, {**env, "SCRIPTED_API_KEY": env_key} if env_key else env)


def test_codex_does_the_step_and_its_key_is_never_kept(prefect_api, codex_image, tmp_path):
    with ScriptedResponses([shell("echo hello > hello.txt"), message("Created hello.txt.")]) as model:
        done, report = exec_plan(codex_plan(codex_image, model), tmp_path / "ws")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ws" / "hello.txt").read_text() == "hello\n"
    assert "Create hello.txt that says hello." in model.requests[0].body_text  # the instruction reached the model
    assert model.requests[0].headers["authorization"] == f"Bearer {SECRET}"  # and the key from autodev's environment

    s = store()
    (attempt, _) = s.attempts.of(report["run_id"])
    usage = s.attempts.model_calls(report["run_id"])
    s.close()
    agent = attempt.result.agent
    assert (agent.input_tokens, agent.output_tokens, agent.last_message) == (200, 20, "Created hello.txt.")
    assert [(u.purpose, u.tokens) for u in usage] == [("agent:greet", 220)]

    # The key is nowhere: the state store, the run's log files, the flow run's parameters and logs.
    database = Path(load_settings().database_url.removeprefix("sqlite:///"))
    assert SECRET.encode() not in database.read_bytes()
    for log in (tmp_path / "ws" / ".autodev").rglob("*.log"):
        assert SECRET not in log.read_text(errors="replace"), log
    flow_run = httpx.post(f"{prefect_api}/flow_runs/filter", json={"limit": 5, "sort": "START_TIME_DESC"}).json()
    mine = [r for r in flow_run if r["name"].startswith("codex-")]
    assert mine and all(SECRET not in json.dumps(r["parameters"]) for r in mine)
    query = {"logs": {"flow_run_id": {"any_": [r["id"] for r in mine]}}, "limit": 200}
    for _ in range(50):  # the server takes in logs in batches
        logs = httpx.post(f"{prefect_api}/logs/filter", json=query).json()
        if any("succeeded: exit code 0" in entry["message"] for entry in logs):
            break
        time.sleep(0.2)
    assert logs and not [entry for entry in logs if SECRET in entry["message"]]
    # And the Prefect server's own database (flow runs, task runs, logs, events, artifacts), byte for byte.
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    prefect_db = Path(PREFECT_API_DATABASE_CONNECTION_URL.value().split(":///", 1)[1])
    for file in [prefect_db, *prefect_db.parent.glob(prefect_db.name + "-wal")]:
        assert SECRET.encode() not in file.read_bytes(), file


def test_a_silent_model_blocks_the_run_within_the_stall_timeout(prefect_api, codex_image, tmp_path):
    with ScriptedResponses([silent()]) as model:
        started = time.monotonic()
        done, report = exec_plan(codex_plan(codex_image, model, idle_timeout_ms=600_000), tmp_path / "ws")
        took = time.monotonic() - started
    assert done.returncode == 3, done.stderr  # blocked, waiting for a person
    greet = report["steps"][0]
    assert greet["status"] == "blocked" and greet["exit_code"] == 137
    assert took < 6 + 25, took  # the stall timeout, plus autodev's own start and the decision wait


def test_codex_reconnecting_to_a_silent_model_is_a_stall_not_progress(prefect_api, codex_image, tmp_path):
    with ScriptedResponses([silent()]) as model:
        plan = codex_plan(codex_image, model, idle_timeout_ms=1000, stream_retries=30)
        done, report = exec_plan(plan, tmp_path / "ws")
    assert done.returncode == 3, done.stderr
    greet = report["steps"][0]
    assert greet["status"] == "blocked" and "Reconnecting... 2/30" in greet["output_tail"]
    s = store()
    (attempt,) = s.attempts.of(report["run_id"])
    blocker = s.sessions.get(report["run_id"]).metadata.blockers[-1]
    s.close()
    assert 6 <= attempt.result.duration_s < 6 + 10, attempt.result.duration_s  # Codex printed all along
    assert "only lines that repeat" in attempt.result.exit_reason
    assert "could not reach its model" in blocker.suggested_action and "Reconnecting" in blocker.summary


def test_without_a_network_the_advice_says_the_model_is_out_of_reach(prefect_api, codex_image, tmp_path):
    with ScriptedResponses([message("never asked")]) as model:
        done, report = exec_plan(codex_plan(codex_image, model, network="false"), tmp_path / "ws")
    # Codex waits for a network, printing "Reconnecting... waiting for network": a stall, blocked for a person.
    assert done.returncode == 3, done.stderr
    assert not model.requests
    assert report["steps"][0]["status"] == "blocked" and "waiting for network" in report["steps"][0]["output_tail"]
    assert any("could not reach its model" in line and "`network`" in line for line in report["next_actions"])


def test_a_refused_key_is_told_apart(prefect_api, codex_image, tmp_path):
    with ScriptedResponses([http_error(401)]) as model:
        done, report = exec_plan(codex_plan(codex_image, model), tmp_path / "ws")
    assert done.returncode == 1, done.stderr
    assert any("refused its credentials" in line for line in report["next_actions"])


def test_a_missing_secret_stops_the_run_before_it_starts(prefect_api, codex_image, tmp_path):
    with ScriptedResponses([message("never asked")]) as model:
        done, _ = exec_plan(codex_plan(codex_image, model), tmp_path / "ws", env_key=None)
    assert done.returncode == 4 and "SCRIPTED_API_KEY is not set" in done.stderr and "export SCRIPTED_API_KEY=" in done.stderr
    assert not model.requests


def test_stdin_is_closed_so_codex_never_waits_for_it(prefect_api, codex_image, tmp_path):
    plan = {"project": "stdin", "image": codex_image, "steps": [{"id": "ask", "run": "codex exec --skip-git-repo-check"}]}
    started = time.monotonic()
    done, report = exec_plan(plan, tmp_path / "ws")
    assert done.returncode == 1 and time.monotonic() - started < 60
    assert "No prompt provided via stdin" in report["steps"][0]["output_tail"]  # EOF at once, not a hang


def test_a_plan_whose_image_lacks_its_agent_is_refused_with_the_build_command(prefect_api, docker_engine, tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text("project: p\nagent: codex\nsteps:\n  - {id: e, kind: agent, instruction: do it}\n")
    done = subprocess.run([*AUTODEV, "exec", str(plan), "--workspace", str(tmp_path / "ws")], capture_output=True, text=True)
    assert done.returncode == 4 and "autodev image build --agent codex" in done.stderr


def small_repository(path: Path) -> Path:
    """A Python repository with one passing test, committed, as a user has it."""
    (path / "tests").mkdir(parents=True)
    (path / "tests" / "test_ok.py").write_text("def test_ok():\n    assert True\n")
    (path / "README.md").write_text("# tiny\n")
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["-c", "user.name=me", "-c", "user.email=me@example.com", "commit", "-qm", "tiny"]):
        subprocess.run(["git", *command], cwd=path, check=True)
    return path


def test_autodev_run_with_agent_codex_does_every_task_with_codex(prefect_api, codex_image, tmp_path):
    """`autodev run TASKS.md --workspace REPO --agent codex` with no model of autodev's own: the
    plan is one agent step per task, and Codex does each of them, with git at hand."""
    repo = small_repository(tmp_path / "tiny")
    tasks = tmp_path / "TASKS.md"
    tasks.write_text("# tiny chores\n\n- [ ] add greet.py\n- [ ] add bye.py\n")
    script = [shell("git log --oneline && echo 'GREETING = 1' > greet.py && git add greet.py && git commit -qm 'agent: greet'"),
              message("Added greet.py."), shell("echo 'FAREWELL = 1' > bye.py && git status --short"), message("Added bye.py.")]  # fmt: skip
    with ScriptedResponses(script) as model:
        args = " ".join(shlex.quote(a) for a in codex_config_args(model.base_url, env_key="OPENAI_API_KEY"))
        done = subprocess.run(
            [*AUTODEV, "run", str(tasks), "--workspace", str(repo), "--agent", "codex", "--agent-args", args,
             "--network", "host", "--parallel", "1", "--yes", "--json"],  # the scripted model's answers in task order
            capture_output=True, text=True, timeout=600, env={**os.environ, "OPENAI_API_KEY": SECRET},
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert [(t["task"], t["status"]) for t in report["tasks"]] == [("add greet.py", "succeeded"), ("add bye.py", "succeeded")]
    assert [t["tokens"] for t in report["tasks"]] == [220, 220]  # what Codex reported, per task
    assert len(model.requests) == 4 and "add greet.py" in model.requests[0].body_text
    # git works inside the sandbox, on the task's branch: the agent read the history, committed
    # by itself (autodev still marks the round with a commit) and saw its own change.
    assert " tiny" in model.requests[1].body_text and "?? bye.py" in model.requests[3].body_text
    commits = [c.split(" ", 1)[1] for c in report["repository"]["commits"]]
    assert commits == ["agent: greet", "autodev: task-1 (attempt 1)", "autodev: task-2 (attempt 1)"]
    branch = report["repository"]["branch"]  # brought into the repository; its checkout untouched
    log = subprocess.run(["git", "log", "--format=%s", branch], cwd=repo, capture_output=True, text=True, check=True).stdout
    assert log.split("\n")[:4] == ["autodev: task-2 (attempt 1)", "autodev: task-1 (attempt 1)", "agent: greet", "tiny"]
    status = subprocess.run(["git", "status", "--short", "--branch"], cwd=repo, capture_output=True, text=True, check=True).stdout
    assert status == "## main\n"
    s = store()
    usage = s.attempts.model_calls(report["run_id"])
    s.close()
    assert sorted(u.purpose for u in usage) == ["agent:task-1", "agent:task-2"]  # Codex's tokens, per task
    assert SECRET not in done.stdout + done.stderr


def run_tasks(repo: Path, tasks: Path, model: ScriptedResponses, **env: str) -> dict:
    args = " ".join(shlex.quote(a) for a in codex_config_args(model.base_url, env_key="OPENAI_API_KEY"))
    done = subprocess.run(
        [*AUTODEV, "run", str(tasks), "--workspace", str(repo), "--agent", "codex", "--agent-args", args, "--network", "host",
         "--parallel", "1", "--yes", "--json"],  # the scripted model's answers in task order
        capture_output=True, text=True, timeout=600, env={**os.environ, "OPENAI_API_KEY": SECRET, **env},
    )  # fmt: skip
    assert done.stdout, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_a_second_run_on_the_same_task_list_does_only_what_is_left(prefect_api, codex_image, tmp_path):
    repo = small_repository(tmp_path / "tiny")
    tasks = tmp_path / "TASKS.md"
    tasks.write_text("# tiny chores\n\n- [ ] add greet.py\n- [ ] add bye.py\n")
    with ScriptedResponses([shell("echo 'GREETING = 1' > greet.py"), message("Added greet.py."), silent()]) as model:
        first = run_tasks(repo, tasks, model, AUTODEV_STALL_TIMEOUT_S="2", AUTODEV_DECISION_TIMEOUT_S="1")
    assert [(t["task"], t["status"]) for t in first["tasks"]] == [("add greet.py", "succeeded"), ("add bye.py", "blocked")]

    with ScriptedResponses([shell("echo 'FAREWELL = 1' > bye.py"), message("Added bye.py.")]) as model:
        second = run_tasks(repo, tasks, model)
    assert [(t["task"], t["status"]) for t in second["tasks"]] == [("add bye.py", "succeeded")]  # only what was left
    assert "add bye.py" in model.requests[0].body_text and "add greet.py" not in model.requests[0].body_text
    branch = second["repository"]
    assert branch["continues"] == first["run_id"] and branch["carried"] == ["add greet.py"]
    log = subprocess.run(["git", "log", "--format=%s", branch["branch"]], cwd=repo, capture_output=True, text=True, check=True).stdout
    assert log.split("\n")[:3] == ["autodev: task-2 (attempt 1)", "autodev: task-1 (attempt 1)", "tiny"]  # on the first run's work
