"""A blocked run waits for a person: decide from the CLI while it waits, or continue it later."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.helpers import store
from tests.test_cli import AUTODEV, autodev, write

pytestmark = [pytest.mark.slow, pytest.mark.docker]

STUCK = """
project: decide
defaults: {stall_timeout_s: 1, max_stall_retries: 0}
steps:
  - {id: setup, run: "echo ready > setup.txt"}
  - {id: stuck, run: "sleep 600", depends_on: [setup]}
  - {id: after, run: "cat setup.txt", depends_on: [stuck]}
"""


def wait_until_blocked(timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = store()
        session = s.sessions.latest()
        s.close()
        if session and session.status == "blocked" and session.metadata.phase.startswith("waiting for a decision"):
            return session.run_id
        time.sleep(0.3)
    raise AssertionError("the run never blocked")


def test_a_decision_from_the_cli_reaches_the_waiting_run(prefect_api, docker_engine, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTODEV_DECISION_TIMEOUT_S", "120")
    plan = write(tmp_path / "plan.yaml", STUCK)
    proc = subprocess.Popen([*AUTODEV, "exec", str(plan), "--workspace", str(tmp_path / "ws"), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_id = wait_until_blocked()
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            deadline = time.monotonic() + 15
            while not client.read_flow_run(run_id).state.is_paused():
                assert time.monotonic() < deadline, "the flow run never paused"
                time.sleep(0.2)
        decided = autodev("resume", run_id, "--action", "retry", "--command", "echo fixed by a person",
                          "--note", "the sleep was a placeholder", "--json")
        assert decided.returncode == 0, decided.stderr
        report = json.loads(decided.stdout)
        assert report["status"] == "succeeded" and report["interventions"] == 1
        stuck = report["steps"][1]
        assert stuck["command"] == "echo fixed by a person" and stuck["output_tail"] == "echo fixed by a person\n"[5:]
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        assert json.loads(out)["status"] == "succeeded"
    finally:
        proc.kill()
    s = store()
    meta = s.sessions.get(run_id).metadata
    s.close()
    (intervention,) = meta.interventions
    assert (intervention.step_id, intervention.action, intervention.note) == ("stuck", "retry", "the sleep was a placeholder")


def test_without_a_decision_in_time_the_cli_exits_3_and_the_run_can_continue_later(prefect_api, docker_engine, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTODEV_DECISION_TIMEOUT_S", "2")
    plan = write(tmp_path / "plan.yaml", STUCK)
    first = autodev("exec", str(plan), "--workspace", str(tmp_path / "ws"), "--json")
    assert first.returncode == 3, first.stderr
    report = json.loads(first.stdout)
    assert report["status"] == "blocked"
    assert [s["status"] for s in report["steps"]] == ["succeeded", "blocked", "pending"]

    later = autodev("resume", report["run_id"], "--action", "skip", "--note", "not needed", "--json")
    assert later.returncode == 0, later.stderr
    done = json.loads(later.stdout)
    assert done["run_id"] == report["run_id"] and done["interventions"] == 1
    assert [(s["status"], s["attempts"]) for s in done["steps"]] == [("succeeded", 1), ("skipped", 1), ("succeeded", 1)]
    assert done["steps"][2]["output_tail"] == "ready\n"  # same workspace, setup not re-run


def test_abort_fails_the_run_and_runs_nothing_more(prefect_api, docker_engine, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTODEV_DECISION_TIMEOUT_S", "1")
    plan = write(tmp_path / "plan.yaml", STUCK)
    first = json.loads(autodev("exec", str(plan), "--workspace", str(tmp_path / "ws"), "--json").stdout)
    aborted = autodev("resume", first["run_id"], "--action", "abort", "--json")
    assert aborted.returncode == 1
    assert [s["status"] for s in json.loads(aborted.stdout)["steps"]] == ["succeeded", "failed", "skipped"]
    again = autodev("resume", first["run_id"], "--action", "retry")
    assert again.returncode == 2 and "not blocked" in again.stderr


KEEP_GOING = """
project: keep-going
defaults: {stall_timeout_s: 1, max_stall_retries: 0}
steps:
  - {id: stuck, run: "sleep 600"}
  - {id: after-stuck, run: "echo after", depends_on: [stuck]}
  - {id: by-hand, kind: agent, instruction: "write notes.txt by hand"}
  - {id: independent, run: "echo independent > independent.txt"}
  - {id: after-independent, run: "cat independent.txt", depends_on: [independent]}
"""


def test_blocked_steps_do_not_hold_back_independent_work_and_each_gets_its_decision(prefect_api, docker_engine, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTODEV_DECISION_TIMEOUT_S", "1")
    plan = write(tmp_path / "plan.yaml", KEEP_GOING)
    first = autodev("exec", str(plan), "--workspace", str(tmp_path / "ws"), "--json")
    assert first.returncode == 3, first.stderr
    report = json.loads(first.stdout)
    by_id = {s["id"]: s for s in report["steps"]}
    assert by_id["independent"]["status"] == by_id["after-independent"]["status"] == "succeeded"
    assert by_id["stuck"]["status"] == by_id["by-hand"]["status"] == "blocked"
    assert by_id["after-stuck"]["status"] == "pending" and by_id["after-stuck"]["waits_for"] == ["stuck"]
    assert [(b["step_id"], b["kind"]) for b in report["blockers"]] == [("stuck", "stall"), ("by-hand", "manual")]

    shown = autodev("status", report["run_id"])
    assert "blocked at stuck (stall)" in shown.stdout and "waiting on it: after-stuck" in shown.stdout
    assert "blocked at by-hand (manual)" in shown.stdout

    unnamed = autodev("resume", report["run_id"], "--action", "skip")
    assert unnamed.returncode == 2 and "--step" in unnamed.stderr and "stuck" in unnamed.stderr
    skipped = autodev("resume", report["run_id"], "--step", "by-hand", "--action", "skip", "--json")
    assert skipped.returncode == 3, skipped.stderr  # still blocked at stuck: its own decision comes next
    assert [b["step_id"] for b in json.loads(skipped.stdout)["blockers"]] == ["stuck"]
    done = autodev("resume", report["run_id"], "--action", "retry", "--command", "echo unstuck", "--json")
    assert done.returncode == 0, done.stderr
    final = json.loads(done.stdout)
    assert final["status"] == "succeeded" and final["interventions"] == 2
    assert {s["id"]: s["attempts"] for s in final["steps"]}["independent"] == 1  # not run again
