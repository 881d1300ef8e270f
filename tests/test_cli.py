"""The `autodev` CLI as a user runs it: exit codes, --json output, status, interruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import AUTODEV


def autodev(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*AUTODEV, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ("project: p\nsteps:\n  - {id: a, run: 'true', depends_on: [b]}\n  - {id: b, run: 'true', depends_on: [a]}", "cycle"),
        ("project: p\nsteps:\n  - {id: a, run: ''}", "step 'a' (steps[0]) field 'run': command is empty"),
        ("project: p\nsteps: [", "not valid YAML"),
    ],
)
def test_bad_plans_exit_2_and_nothing_runs(tmp_path, plan, message):
    result = autodev("exec", str(write(tmp_path / "plan.yaml", plan)), "--workspace", str(tmp_path / "ws"))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "ws").exists()
    assert not (tmp_path / "autodev.db").exists()  # not even a state store was opened


def test_usage_errors_exit_2(tmp_path):
    assert autodev("exec").returncode == 2
    assert autodev("exec", str(tmp_path / "missing.yaml")).returncode == 2
    assert autodev("frobnicate").returncode == 2


PLAN = "project: p\nsteps:\n  - {id: a, run: 'echo hi'}\n"


@pytest.mark.docker
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AUTODEV_IMAGE": "autodev-no-such-image:never"}, "autodev image build"),
        ({"AUTODEV_DATABASE_URL": "postgresql://u:topsecret@127.0.0.1:1/none"}, "AUTODEV_DATABASE_URL"),
        ({"DOCKER_HOST": "unix:///nonexistent/docker.sock"}, "no Docker engine is reachable"),
    ],
)
def test_environment_problems_exit_4_with_the_fix(docker_engine, tmp_path, env, message):
    result = autodev("exec", str(write(tmp_path / "plan.yaml", PLAN)), "--workspace", str(tmp_path / "ws"), env=env)
    assert result.returncode == 4, result.stderr
    assert message in result.stderr and "fix:" in result.stderr
    assert "topsecret" not in result.stderr


TASKS = "# chores\n\n- [ ] add a greeting\n"


@pytest.mark.docker
@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (["--agent", "gpt-pilot"], {}, 2, "--agent 'gpt-pilot': no such agent; choose codex, claude, aider, or builtin"),
        (["--agent", "codex", "--network", "not a name!"], {}, 2, "use false, true, host or the name of a Docker network"),
        (["--network", "host"], {"AUTODEV_AGENT": "aider", "AUTODEV_IMAGE": "autodev-agentless:test"}, 4,
         "fix: autodev image build --agent aider"),
        (["--parallel", "0"], {}, 2, "--parallel 0: give how many tasks may run at once, from 1 to 32"),
    ],
)  # fmt: skip
def test_autodev_runs_agent_is_checked_before_anything_runs(docker_engine, tmp_path, args, env, code, message):
    from autodev.core.settings import DEFAULT_IMAGE

    docker_engine.images.get(DEFAULT_IMAGE).tag("autodev-agentless", "test")  # no agent CLI in it
    try:
        tasks = write(tmp_path / "TASKS.md", TASKS)
        result = autodev("run", str(tasks), "--workspace", str(tmp_path / "ws"), *args, env=env)
    finally:
        docker_engine.images.remove("autodev-agentless:test")
    assert result.returncode == code, result.stderr
    assert message in " ".join(result.stderr.split())  # the message, however the terminal wrapped it
    assert not (tmp_path / "ws").exists()  # nothing was made


@pytest.mark.slow
@pytest.mark.docker
def test_exec_json_and_status_json_follow_the_contract(prefect_api, docker_engine, tmp_path):
    plan = write(
        tmp_path / "plan.yaml",
        "project: cli\nsteps:\n  - {id: ok, run: 'echo fine'}\n  - {id: bad, run: 'echo broken >&2; exit 3'}\n"
        "  - {id: after, run: 'true', depends_on: [bad]}\n",
    )
    result = autodev("exec", str(plan), "--workspace", str(tmp_path / "ws"), "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)  # exactly one JSON object on stdout
    assert set(report) == {
        "run_id", "status", "steps", "success_rate", "interventions", "next_actions", "blockers",
        "tasks", "repository", "orchestrator_gone",
    }
    assert report["tasks"] == [] and report["repository"] is None  # a plain plan: no tasks, no repository
    assert report["status"] == "failed"
    assert [(s["id"], s["status"], s["exit_code"]) for s in report["steps"]] == [
        ("ok", "succeeded", 0),
        ("bad", "failed", 3),
        ("after", "skipped", None),
    ]
    step = report["steps"][1]
    assert set(step) == {"id", "command", "status", "exit_code", "duration_s", "attempts", "output_tail", "waits_for", "waiting_until"}
    assert step["output_tail"] == "broken\n" and step["attempts"] == 1

    status = autodev("status", "--json")
    assert status.returncode == 0
    shown = json.loads(status.stdout)
    meta = shown.pop("metadata")  # status adds the run's metadata document, as the seed defines it
    assert shown == report
    assert {"last_command_result", "command_history", "phase", "blockers", "queue", "next_actions"} <= set(meta)
    assert meta["last_command_result"]["step_id"] == "bad" and meta["phase"] == "failed"
    assert set(meta["next_actions"]) == {"recommendations", "confidence", "evidence"}
    assert meta["advice"] == report["next_actions"]
    by_id = autodev("status", report["run_id"])
    assert by_id.returncode == 0 and "failed" in by_id.stdout and "bad" in by_id.stdout

    ok = write(tmp_path / "ok.yaml", PLAN)
    assert autodev("exec", str(ok), "--workspace", str(tmp_path / "ws2"), "--json").returncode == 0


def test_status_of_an_unknown_run_is_bad_input():
    result = autodev("status", "no-such-run")
    assert result.returncode == 2 and "no run 'no-such-run'" in result.stderr


@pytest.mark.slow
@pytest.mark.docker
def test_an_interrupted_run_removes_its_container_and_is_recorded(prefect_api, docker_engine, tmp_path):
    plan = write(tmp_path / "plan.yaml", "project: interrupted\nsteps:\n  - {id: long, run: 'sleep 300'}\n")
    proc = subprocess.Popen(
        [*AUTODEV, "exec", str(plan), "--workspace", str(tmp_path / "ws")], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        running = []
        while time.monotonic() < deadline and not running:
            time.sleep(0.2)
            running = [
                c
                for c in docker_engine.containers.list(filters={"label": "autodev.run_id"})
                if "sleep 300" in str(c.top())
            ]
        assert running, "the step never started"
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        proc.kill()
    run_id = running[0].labels["autodev.run_id"]
    assert not docker_engine.containers.list(all=True, filters={"label": f"autodev.run_id={run_id}"})
    assert proc.returncode != 0
    status = json.loads(autodev("status", run_id, "--json").stdout)
    assert status["status"] == "failed"


@pytest.mark.docker
def test_doctor_reports_each_check_with_its_fix(docker_engine, prefect_api):
    ok = autodev("doctor")
    assert ok.returncode == 0, ok.stdout
    for name in ("docker engine", "sandbox image", "state store", "prefect api"):
        assert name in ok.stdout
    assert "missing" not in ok.stdout  # nothing required is missing
    assert "not set up: work pool autodev-process" in ok.stdout and "autodev deploy" in ok.stdout  # a note: not deployed

    broken = autodev("doctor", env={"AUTODEV_IMAGE": "autodev-no-such-image:never"})
    assert broken.returncode == 4
    assert "missing" in broken.stdout and "autodev image build" in broken.stdout


@pytest.mark.slow
@pytest.mark.docker
def test_a_blocked_run_exits_3_and_says_what_to_try(prefect_api, docker_engine, tmp_path):
    plan = write(
        tmp_path / "plan.yaml",
        "project: stuck\ndefaults: {stall_timeout_s: 1, max_stall_retries: 0}\nsteps:\n  - {id: wait, run: 'sleep 600'}\n",
    )
    result = autodev("exec", str(plan), "--workspace", str(tmp_path / "ws"))
    assert result.returncode == 3, result.stderr
    assert "blocked at wait (stall)" in result.stdout and "try:" in result.stdout
    status = autodev("status")
    assert status.returncode == 0 and "heartbeat" in status.stdout and "phase blocked" in status.stdout


@pytest.mark.slow
@pytest.mark.docker
def test_an_offline_run_on_the_temporary_server_logs_no_errors(docker_engine, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "PREFECT_SERVER_ANALYTICS"))}
    env["PREFECT_LOGGING_LEVEL"] = "INFO"  # the log as a user sees it
    example = Path(__file__).resolve().parents[1] / "examples" / "hello-python.yaml"
    done = subprocess.run([*AUTODEV, "exec", str(example), "--workspace", str(tmp_path / "ws")], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Starting temporary server" in done.stderr  # it ran offline, on Prefect's temporary server
    assert "telemetry" not in done.stderr and "Traceback" not in done.stderr and "| ERROR" not in done.stderr
