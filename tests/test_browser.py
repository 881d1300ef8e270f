"""The Prefect UI shows a run as autodev means it to: a headless Chromium (Debian's package)
opens the run's page on a real `prefect server start`; the screenshots are kept."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, Browser
from tests.helpers import AUTODEV, prefect_server_process

ROOT = Path(__file__).resolve().parents[1]
SHOTS = Path(os.environ.get("AUTODEV_TEST_ARTIFACTS", ROOT / ".autodev-run" / "test-artifacts"))
PLAN = """
project: ui-check
steps:
  - {id: write-notes, run: 'echo hello > notes.txt'}
  - {id: read-notes, run: 'cat notes.txt', depends_on: [write-notes]}
  - {id: count-words, run: 'wc -w notes.txt', depends_on: [read-notes]}
"""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.docker,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/test.sh installs it)"),
]


def open_page(browser: Browser, url: str, *needles: str) -> str:
    """The page's text once it shows `needles`. On a loaded machine the UI's first requests can
    time out, leaving the page without part of its data: loaded again (up to three times), it
    shows them."""
    browser.open(url)
    text = browser.wait_for_text(*needles)
    for _ in range(3):
        if all(n in text for n in needles):
            break
        browser.open(url)
        text = browser.wait_for_text(*needles, timeout_s=60)
    return text


def test_the_run_page_shows_the_step_task_runs_and_the_artifacts(docker_engine, tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    with prefect_server_process(tmp_path) as env:
        result = subprocess.run(
            [*AUTODEV, "exec", str(plan), "--workspace", str(tmp_path / "ws"), "--json"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=180,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        run_id = json.loads(result.stdout)["run_id"]
        ui = env["PREFECT_API_URL"].removesuffix("/api")
        with Browser() as browser:
            # The flow's name in the breadcrumb comes from a request of its own, after the run's.
            header = open_page(browser, f"{ui}/runs/flow-run/{run_id}", "ui-check-", "Completed", "Task runs", "autodev-plan")
            assert "ui-check-" in header and "Completed" in header and "autodev-plan" in header

            browser.click("#task-runs")
            tasks = browser.wait_for_text("write-notes", "read-notes", "count-words")
            assert all(step in tasks for step in ("write-notes", "read-notes", "count-words"))
            shot = browser.screenshot(SHOTS / "run-page-task-runs.png")

            browser.click("#artifacts")
            artifacts = browser.wait_for_text("autodev-run-summary", "evaluation-ui-check")
            for key in ("autodev-steps", "autodev-run-summary", "insights-ui-check", "evaluation-ui-check"):
                assert key in artifacts
            shot2 = browser.screenshot(SHOTS / "run-page-artifacts.png")
    for png in (shot, shot2):
        data = png.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000  # a rendered page, not a blank one


DECIDE = """
project: ui-decide
steps:
  - {id: implement, kind: agent, instruction: "Implement greet() in greet.py so that the tests in tests/ pass; keep the public names as they are."}
  - {id: test, run: "true", depends_on: [implement]}
"""
CLIPPED = """[...document.querySelectorAll('.p-modal__body *')]
  .filter(e => getComputedStyle(e).overflowY !== 'visible' && e.scrollHeight > e.clientHeight + 2).map(e => e.className)"""
CLICK_RESUME = "[...document.querySelectorAll('button')].find(b => b.innerText.trim().startsWith('Resume')).click()"


def test_the_decision_form_shows_the_whole_evidence_and_the_blocked_command(docker_engine, tmp_path):
    import time

    import httpx

    plan = tmp_path / "plan.yaml"
    plan.write_text(DECIDE)
    with prefect_server_process(tmp_path, {"AUTODEV_DECISION_TIMEOUT_S": "120"}) as env:
        run = subprocess.Popen([*AUTODEV, "exec", str(plan), "--workspace", str(tmp_path / "ws"), "--json"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        try:
            api = env["PREFECT_API_URL"]
            for _ in range(120):
                paused = [r for r in httpx.post(f"{api}/flow_runs/filter", json={}).json() if r["state"]["type"] == "PAUSED"]
                if paused:
                    break
                time.sleep(0.5)
            with Browser() as browser:
                open_page(browser, f"{api.removesuffix('/api')}/runs/flow-run/{paused[0]['id']}", "Resume")
                time.sleep(1)
                browser._call("Runtime.evaluate", expression=CLICK_RESUME)
                form = browser.wait_for_text("is blocked", "Submit")
                clipped = browser._call("Runtime.evaluate", expression=CLIPPED, returnByValue=True)["result"]["value"]
                browser.screenshot(SHOTS / "decision-form.png")
        finally:
            run.terminate()  # as `kill` would: the run unwinds, its sandbox is removed
            run.wait(60)
    assert not docker_engine.containers.list(all=True, filters={"label": f"autodev.run_id={paused[0]['id']}"})
    assert not clipped, clipped  # nothing in the form hides part of its text in a box of its own
    assert "implement is blocked (manual)" in form
    assert "and it has no agent or agent_command" in form  # the whole summary, in the form's scrolling body
    assert "or set AUTODEV_LLM_MODEL and retry" in form  # and the whole suggested action
    assert "Its command: agent: Implement greet() in greet.py" in form
