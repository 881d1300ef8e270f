"""Real Codex CLI at its provider's usage limit: the scripted Responses server answers 429 with
`Retry-After: 20` and the reset time in the body (as the ChatGPT backend does), then serves.
Codex says "try again at 3:10 AM"; the step waits, shown as `waiting` with its time in
`autodev status`, and then succeeds in the same Codex session: no retry spent, no failure."""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import AUTODEV, store
from tests.scripted_responses import ScriptedResponses, message, shell, usage_limit
from tests.test_cli import autodev
from tests.test_codex import SECRET, codex_plan

pytestmark = [pytest.mark.slow, pytest.mark.docker]


@pytest.fixture(scope="session")
def codex_image(agent_image) -> str:
    return agent_image("codex")


def test_codex_at_its_usage_limit_waits_for_the_reset_then_goes_on(prefect_api, codex_image, tmp_path):
    script = [shell("echo one > one.txt"), usage_limit(20), shell("echo hello > hello.txt"), message("done")]
    with ScriptedResponses(script) as model:
        plan = tmp_path / "plan.json"
        plan.write_text(json.dumps(codex_plan(codex_image, model) | {"defaults": {"stall_timeout_s": 30, "max_stall_retries": 0}}))
        env = {**os.environ, "SCRIPTED_API_KEY": SECRET}
        run = subprocess.Popen([*AUTODEV, "exec", str(plan), "--workspace", str(tmp_path / "ws"), "--json"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        waiting = wait_for_a_waiting_step(run)
        out, err = run.communicate(timeout=240)
    assert run.returncode == 0, err[-3000:]
    report = json.loads(out)
    s = store()
    attempts = s.attempts.of(report["run_id"])
    s.close()
    first, second = [a.result for a in attempts if a.step_id == "greet"]
    assert first.limit is not None and "try again at" in first.limit.line  # what Codex said
    reset = datetime.fromtimestamp(model.limit_resets[0], UTC)
    assert reset <= second.started_at <= reset + timedelta(seconds=65)  # Codex names the minute: the wait ends after it
    assert second.status == "succeeded" and report["status"] == "succeeded"
    assert waiting["status"] == "waiting" and datetime.fromisoformat(waiting["waiting_until"]) >= reset
    assert (tmp_path / "ws" / "hello.txt").read_text() == "hello\n"
    # ...in the same Codex session: the request after the wait carries the round's earlier items.
    assert second.agent.session_id == first.agent.session_id
    assert "echo one > one.txt" in model.requests[2].body_text and "limit of your model provider" in model.requests[2].body_text


def wait_for_a_waiting_step(run: subprocess.Popen) -> dict:
    """`autodev status --json` until a step shows as waiting; that step."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run.poll() is None:
        shown = autodev("status", "--json")
        if shown.returncode in (0, 1, 3) and shown.stdout.strip():
            step = next((s for s in json.loads(shown.stdout)["steps"] if s["status"] == "waiting"), None)
            if step is not None:
                return step
        time.sleep(0.5)
    raise AssertionError("no step was shown waiting")


def test_a_person_ends_a_long_wait_with_autodev_resume(prefect_api, codex_image, tmp_path):
    with ScriptedResponses([usage_limit(3600), shell("echo hello > hello.txt"), message("done")]) as model:
        plan = tmp_path / "plan.json"
        plan.write_text(json.dumps(codex_plan(codex_image, model)))
        env = {**os.environ, "SCRIPTED_API_KEY": SECRET}
        run = subprocess.Popen([*AUTODEV, "exec", str(plan), "--workspace", str(tmp_path / "ws"), "--json"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        waiting = wait_for_a_waiting_step(run)
        run_id = json.loads(autodev("status", "--json").stdout)["run_id"]
        ended = autodev("resume", run_id, "--step", "greet", "--action", "retry", "--note", "the quota was raised", "--json", env=env)
        out, err = run.communicate(timeout=120)
    assert datetime.fromisoformat(waiting["waiting_until"]) > datetime.now(UTC) + timedelta(minutes=50)  # an hour's wait
    assert ended.returncode == 0, ended.stderr[-2000:]
    assert run.returncode == 0, err[-3000:]
    assert json.loads(out)["status"] == "succeeded" and (tmp_path / "ws" / "hello.txt").is_file()
