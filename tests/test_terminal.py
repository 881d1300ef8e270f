"""`autodev status` as a person reads it in a real terminal: tmux, 80 columns, with colours."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time

import pytest

from tests.helpers import AUTODEV, store

pytestmark = [
    pytest.mark.slow,
    pytest.mark.docker,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]
PLAN = """
project: terminal
defaults: {stall_timeout_s: 2, max_stall_retries: 0}
steps:
  - {id: fetch-data, run: "echo connecting to the data service; sleep 600"}
  - {id: report, run: "echo report", depends_on: [fetch-data]}
  - {id: slow-step, run: "sleep 600"}
"""


def tmux_screen(command: str, width: int = 80) -> str:
    """Run `command` in a detached tmux session `width` columns wide; its screen, with colours."""
    name = f"autodev-test-{os.getpid()}"
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in os.environ.items() if k.startswith(("AUTODEV_", "PREFECT_")))
    subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", str(width), "-y", "60",
                    f"env TERM=xterm-256color {env} {command}; sleep 30"], check=True)  # fmt: skip
    try:
        time.sleep(0.5)
        for _ in range(60):
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-e", "-t", name], capture_output=True, text=True).stdout
            if "next:" in screen:
                return screen
            time.sleep(0.5)
        return screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], check=False)


def test_status_of_a_blocked_run_whose_orchestrator_died_fits_80_columns(docker_engine, tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    run = subprocess.Popen([*AUTODEV, "exec", str(plan), "--workspace", str(tmp_path / "ws")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while True:  # fetch-data stalls and blocks; slow-step keeps the run going
        s = store()
        session = s.sessions.latest()
        s.close()
        if session is not None and session.metadata.blockers:
            break
        assert time.monotonic() < deadline, "the run never blocked"
        time.sleep(0.5)
    run.send_signal(signal.SIGKILL)  # the orchestrator dies with the run blocked at one step, running another
    run.wait(30)
    try:
        screen = tmux_screen(f"{shlex.join(AUTODEV)} status")
    finally:  # the dead orchestrator's sandbox is left behind: remove it
        for container in docker_engine.containers.list(all=True, filters={"label": f"autodev.run_id={session.run_id}"}):
            container.remove(force=True)
    plain = subprocess.run(["sed", "-r", r"s/\x1b\[[0-9;]*m//g"], input=screen, capture_output=True, text=True).stdout
    lines = plain.rstrip().splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    text = " ".join(plain.split())  # lines wrapped at 80 columns, read as one
    assert "orchestrator gone" in text and "blocked at fetch-data (stall)" in text and "try:" in text
    assert "waiting on it: report" in text and "next:" in text and "autodev resume" in text
    assert "usage data" not in text  # no telemetry notice either
    heartbeat = next(line for line in screen.splitlines() if "heartbeat" in line)
    assert re.search(r"heartbeat (?:\x1b\[1m)?\x1b\[(?:1;)?31m\d+s ago", heartbeat), repr(heartbeat)  # red: it stopped
