"""Real Claude Code (npm `@anthropic-ai/claude-code` 2.1.332, its native binary, in the image
`autodev image build --agent claude` makes) as a plan's agent step, against a scripted
Anthropic Messages API server on the host's loopback (`tests/scripted_anthropic.py`), through
`autodev exec` as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import exec_json, store
from tests.scripted_anthropic import ScriptedAnthropic, http_error, text, tool_use

pytestmark = [pytest.mark.slow, pytest.mark.docker]
SECRET = "sk-ant-scripted-5d1e0b77a2"


@pytest.fixture(scope="session")
def claude_image(agent_image) -> str:
    return agent_image("claude")


def run_claude(
    tmp_path: Path, image: str, model: ScriptedAnthropic, settings: dict[str, str] | None = None, **env: str,
) -> tuple[subprocess.CompletedProcess, dict]:  # fmt: skip
    plan = {
        "project": "claude",
        "image": image,
        "network": "host",
        "agent": "claude",
        "defaults": {"stall_timeout_s": 6, "max_stall_retries": 0},
        "steps": [
            {"id": "greet", "kind": "agent", "instruction": "Create hello.txt that says hello.",
             "env": {"ANTHROPIC_BASE_URL": model.base_url, **env}},
            {"id": "check", "run": "grep -q hello hello.txt", "depends_on": ["greet"]},
        ],
    }  # fmt: skip
    return exec_json(plan, tmp_path / "ws", {**os.environ, "ANTHROPIC_API_KEY": SECRET, **(settings or {})})


def test_claude_code_does_the_step_and_its_cost_is_kept(prefect_api, claude_image, tmp_path):
    turns = [tool_use("Write", {"file_path": "/workspace/hello.txt", "content": "hello\n"}), text("Created hello.txt.")]
    with ScriptedAnthropic(turns) as model:
        done, report = run_claude(tmp_path, claude_image, model)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ws" / "hello.txt").read_text() == "hello\n"
    assert model.turn_requests[0].headers["x-api-key"] == SECRET  # the preset passed the key through
    s = store()
    agent = s.attempts.of(report["run_id"])[0].result.agent
    usage = s.attempts.model_calls(report["run_id"])
    s.close()
    assert agent.files_changed == ["hello.txt"] and agent.last_message == "Created hello.txt."
    assert agent.cost_usd and agent.cost_usd > 0 and usage[0].cost_usd == agent.cost_usd
    assert SECRET not in json.dumps(report)


def test_claude_rate_limited_for_good_waits_for_the_limit_then_blocks_with_the_figures(prefect_api, claude_image, tmp_path):
    with ScriptedAnthropic([http_error(429)]) as model:  # 429 every time, and no word of when it resets
        done, report = run_claude(tmp_path, claude_image, model, settings={"AUTODEV_LIMIT_WAIT_MAX_S": "10"})
    assert done.returncode == 3, done.stderr  # its retries printed api_retry lines, none progress: a limit, not a hang
    greet = report["steps"][0]
    assert greet["status"] == "blocked" and '"subtype":"api_retry"' in greet["output_tail"]
    (blocker,) = report["blockers"]
    assert blocker["kind"] == "limit" and "past the longest wait (AUTODEV_LIMIT_WAIT_MAX_S, 10s)" in blocker["summary"]
    assert any("raise AUTODEV_LIMIT_WAIT_MAX_S" in line for line in report["next_actions"]), report["next_actions"]


def test_a_refused_key_is_told_apart(prefect_api, claude_image, tmp_path):
    with ScriptedAnthropic([http_error(401)]) as model:
        done, report = run_claude(tmp_path, claude_image, model, CLAUDE_CODE_MAX_RETRIES="0")
    assert done.returncode == 1, done.stderr
    assert report["steps"][0]["status"] == "failed"
    assert any("refused its credentials" in line for line in report["next_actions"])
