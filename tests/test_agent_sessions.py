"""Real Codex CLI and Claude Code continue their own session when a round is retried, against
scripted model servers on loopback: the retried round's request carries the earlier round's
items (its tool call and output), so the agent keeps the context of the work it did. A stall
mid-round, a dead orchestrator (kill -9, then `autodev resume`, in a new sandbox) and a session
the CLI no longer knows (a new session then, and the log says so)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import AUTODEV, exec_json, store
from tests.scripted_anthropic import ScriptedAnthropic, text, tool_use
from tests.scripted_anthropic import silent as anthropic_silent
from tests.scripted_responses import ScriptedResponses, message, shell, silent
from tests.test_codex import SECRET, codex_plan, exec_plan

pytestmark = [pytest.mark.slow, pytest.mark.docker]
SESSIONS = Path(".autodev/home/.codex/sessions")


@pytest.fixture(scope="session")
def codex_image(agent_image) -> str:
    return agent_image("codex")


def attempts_of(run_id: str) -> list:
    s = store()
    found = [a.result for a in s.attempts.of(run_id) if a.step_id == "greet"]
    s.close()
    return found


def stalling_plan(image: str, model: ScriptedResponses) -> dict:
    return codex_plan(image, model) | {"defaults": {"stall_timeout_s": 6, "max_stall_retries": 1}}


def test_codex_stalled_mid_round_is_retried_in_its_own_session(prefect_api, codex_image, tmp_path):
    script = [shell("echo one > one.txt"), silent(), shell("echo hello > hello.txt"), message("done")]
    with ScriptedResponses(script) as model:
        done, report = exec_plan(stalling_plan(codex_image, model), tmp_path / "ws")
    assert done.returncode == 0, done.stderr[-3000:]
    stalled, resumed = attempts_of(report["run_id"])
    assert stalled.status == "stalled" and resumed.status == "succeeded"
    assert stalled.agent.session_id and resumed.agent.session_id == stalled.agent.session_id  # one Codex thread
    continued = model.requests[2].body_text
    assert "echo one > one.txt" in continued and "Create hello.txt that says hello." in continued  # the earlier items
    assert "You were interrupted before you finished: you showed no progress" in continued
    assert f"continues codex session {stalled.agent.session_id}" in done.stderr
    assert (tmp_path / "ws" / "hello.txt").read_text() == "hello\n"
    assert SECRET not in json.dumps(report)


def test_codex_killed_with_its_orchestrator_is_continued_by_autodev_resume(prefect_api, codex_image, tmp_path):
    from tests.test_cli import autodev
    from tests.test_recovery import wait_for_session

    with ScriptedResponses([shell("echo one > one.txt"), silent(), shell("echo hello > hello.txt"), message("done")]) as model:
        plan = tmp_path / "plan.json"
        plan.write_text(json.dumps(codex_plan(codex_image, model) | {"defaults": {"stall_timeout_s": 60}}))
        env = {**os.environ, "SCRIPTED_API_KEY": SECRET}
        proc = subprocess.Popen([*AUTODEV, "exec", str(plan), "--workspace", str(tmp_path / "ws")], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        run_id = wait_for_session().run_id
        until(lambda: len(model.requests) >= 2, "Codex never asked for its second turn")  # it waits on the silent one
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        resumed = autodev("resume", run_id, "--json", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    left, again = attempts_of(run_id)
    assert "orchestrator died" in left.exit_reason and again.status == "succeeded"
    continued = model.requests[2].body_text  # from a new sandbox: the session was kept in the workspace
    assert "echo one > one.txt" in continued and "the orchestrator running it stopped before it finished" in continued
    assert any((tmp_path / "ws" / SESSIONS).rglob("*.jsonl"))


def test_a_session_codex_no_longer_knows_starts_a_new_one(prefect_api, codex_image, tmp_path):
    workspace = tmp_path / "ws"
    script = [shell("echo one > one.txt"), silent(), shell("echo hello > hello.txt"), message("done")]
    with ScriptedResponses(script) as model:
        # While Codex waits on the silent turn, its sessions are lost (a person cleaned the workspace).
        threading.Thread(target=lambda: (until(lambda: len(model.requests) >= 2, "no second turn"),
                                         shutil.rmtree(workspace / SESSIONS)), daemon=True).start()  # fmt: skip
        done, report = exec_plan(stalling_plan(codex_image, model), workspace)
    assert done.returncode == 0, done.stderr[-3000:]
    stalled, refused, fresh = attempts_of(report["run_id"])
    assert refused.status == "failed" and "no rollout found for thread id" in refused.output_tail
    assert fresh.status == "succeeded" and fresh.agent.session_id != stalled.agent.session_id
    assert "could not be continued" in done.stderr and "a new codex session" in done.stderr
    assert "Create hello.txt that says hello." in model.requests[2].body_text  # the task again, from the start


def test_claude_code_stalled_mid_round_is_retried_in_its_own_session(prefect_api, agent_image, tmp_path):
    turns = [tool_use("Bash", {"command": "echo one > one.txt"}), anthropic_silent(),
             tool_use("Write", {"file_path": "/workspace/hello.txt", "content": "hello\n"}), text("Created hello.txt.")]  # fmt: skip
    with ScriptedAnthropic(turns) as model:
        plan = {
            "project": "claude", "image": agent_image("claude"), "network": "host", "agent": "claude",
            # Claude Code can take seconds to say anything on a loaded machine: room for that.
            "defaults": {"stall_timeout_s": 15, "max_stall_retries": 1},
            "steps": [{"id": "greet", "kind": "agent", "instruction": "Create hello.txt that says hello.",
                       "env": {"ANTHROPIC_BASE_URL": model.base_url}}],
        }  # fmt: skip
        done, report = exec_json(plan, tmp_path / "ws", {**os.environ, "ANTHROPIC_API_KEY": "sk-ant-scripted"})
    assert done.returncode == 0, done.stderr[-3000:]
    stalled, resumed = attempts_of(report["run_id"])
    assert stalled.status == "stalled" and resumed.agent.session_id == stalled.agent.session_id
    continued = model.turn_requests[2].body_text
    assert "echo one > one.txt" in continued and "You were interrupted before you finished" in continued
    assert (tmp_path / "ws" / "hello.txt").read_text() == "hello\n"


def until(condition, failure: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.1)
