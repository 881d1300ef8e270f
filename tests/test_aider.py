"""Real aider (PyPI `aider-chat` 0.86.2, in the image `autodev image build --agent aider` makes)
as a plan's agent step, against a scripted chat-completions server on the host's loopback
(`tests/scripted_chat.py`), through `autodev exec` as a user runs it. aider exits 0 whatever
happened: autodev judges it by what it printed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import exec_json, store
from tests.scripted_chat import ScriptedChat, http_error, reply, whole_file

pytestmark = [pytest.mark.slow, pytest.mark.docker]
SECRET = "sk-aider-scripted-93c04f1e"


@pytest.fixture(scope="session")
def aider_image(agent_image) -> str:
    return agent_image("aider")


def run_aider(tmp_path: Path, image: str, model: ScriptedChat, network: str | bool = "host") -> tuple[subprocess.CompletedProcess, dict]:
    plan = {
        "project": "aider",
        "image": image,
        "network": network,
        "agent": "aider",
        "agent_args": f"--model openai/gpt-4o-mini --openai-api-base {model.base_url}",
        # aider prints nothing until its imports are done: 4-5 s of CPU, over 8 s when the test
        # session's own start shares the two cores (the preset's default is 600 s).
        "defaults": {"stall_timeout_s": 20, "max_stall_retries": 0},
        "steps": [
            {"id": "greet", "kind": "agent", "instruction": "Create hello.py that prints hello."},
            {"id": "check", "run": "python3 hello.py | grep -q hello", "depends_on": ["greet"]},
        ],
    }
    return exec_json(plan, tmp_path / "ws", {**os.environ, "OPENAI_API_KEY": SECRET})


def test_aider_does_the_step_and_its_tokens_are_kept(prefect_api, aider_image, tmp_path):
    with ScriptedChat([reply(whole_file("hello.py", "print('hello')"))]) as model:
        done, report = run_aider(tmp_path, aider_image, model)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ws" / "hello.py").read_text().strip() == "print('hello')"
    assert model.completions[0].headers["authorization"] == f"Bearer {SECRET}"
    assert not list((tmp_path / "ws").glob(".aider*"))  # no history files left in the workspace
    s = store()
    agent = s.attempts.of(report["run_id"])[0].result.agent
    s.close()
    assert agent.files_changed == ["hello.py"] and agent.input_tokens > 0 and agent.output_tokens > 0


def test_a_refused_key_fails_the_step_although_aider_exits_0(prefect_api, aider_image, tmp_path):
    with ScriptedChat([http_error(401, "Incorrect API key provided")]) as model:
        done, report = run_aider(tmp_path, aider_image, model)
    assert done.returncode == 1, done.stderr
    greet = report["steps"][0]
    assert (greet["status"], greet["exit_code"]) == ("failed", 0)
    assert any("refused its credentials" in line for line in report["next_actions"])


def test_without_a_network_aiders_retries_are_a_stall(prefect_api, aider_image, tmp_path):
    with ScriptedChat([reply("never asked")]) as model:
        done, report = run_aider(tmp_path, aider_image, model, network=False)
    assert done.returncode == 3, done.stderr  # blocked: the same retry lines again and again
    assert not model.completions
    assert "Retrying in" in report["steps"][0]["output_tail"]
    assert any("could not reach its model" in line for line in report["next_actions"])
