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
            browser.open(f"{ui}/runs/flow-run/{run_id}")
            header = browser.wait_for_text("ui-check-", "Completed", "Task runs")
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
