"""When the orchestrator dies: `kill -9` of `autodev exec` at random moments, then `autodev
resume`. Every run ends succeeded, no step that succeeded runs again, no result is lost, and no
sandbox is left behind."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections import Counter

import pytest

from tests.helpers import AUTODEV, containers_of, store
from tests.test_cli import autodev, write

pytestmark = [pytest.mark.slow, pytest.mark.docker]

SIX_STEPS = "project: killed\nmax_parallel: 2\nsteps:\n" + "".join(
    f"  - {{id: s{n}, run: 'sleep 1.{n}; echo s{n} >> ran.txt'{', depends_on: [s' + str(n - 2) + ']' if n > 2 else ''}}}\n"
    for n in range(1, 7)
)


def wait_for_session(timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = store()
        session = s.sessions.latest()
        s.close()
        if session is not None:
            return session
        time.sleep(0.05)
    raise AssertionError("the run never started")


def test_kill_9_of_the_orchestrator_at_20_random_moments_then_resume(prefect_api, docker_engine, tmp_path, monkeypatch):
    rng = random.Random(20261201)
    plan = write(tmp_path / "plan.yaml", SIX_STEPS)
    moments, resumed_runs, mid_command = [], 0, 0
    for trial in range(20):
        monkeypatch.setenv("AUTODEV_DATABASE_URL", f"sqlite:///{tmp_path / f'store-{trial}.db'}")
        workspace = tmp_path / f"ws-{trial}"
        moment = rng.uniform(0.2, 4.0)
        run_id = exec_killed_after(plan, workspace, moment)
        moments.append(round(moment, 2))

        killed, before = recorded(run_id)
        if killed.status == "running":
            resume_the_orphaned_run(run_id, trial, moment)
            resumed_runs += 1
        attempts = assert_every_step_succeeded_once_and_no_result_was_lost(run_id, before, workspace, trial, moment)
        mid_command += any("orchestrator died" in (a.result.exit_reason or "") for a in attempts)
        assert not containers_of(docker_engine, run_id), f"trial {trial}: a sandbox was left behind"
    print(f"killed after (s): {moments}; resumed {resumed_runs}, {mid_command} of them with a command left running")
    assert resumed_runs >= 15 and mid_command >= 5  # the kills landed in the run, and often mid-command


def exec_killed_after(plan, workspace, moment: float) -> str:
    """`autodev exec PLAN`, killed with SIGKILL `moment` seconds after its run started; the run's id."""
    proc = subprocess.Popen([*AUTODEV, "exec", str(plan), "--workspace", str(workspace)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_id = wait_for_session().run_id
    time.sleep(moment)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    return run_id


def recorded(run_id: str) -> tuple:
    """The run's session and its attempts, as the store has them now."""
    s = store()
    session, attempts = s.sessions.get(run_id), s.attempts.of(run_id)
    s.close()
    return session, attempts


def resume_the_orphaned_run(run_id: str, trial: int, moment: float) -> None:
    """`autodev status` shows the orchestrator gone, and `autodev resume` finishes the run."""
    shown = json.loads(autodev("status", run_id, "--json").stdout)
    assert shown["orchestrator_gone"], f"trial {trial}: a dead orchestrator is not shown as such"
    resumed = autodev("resume", run_id, "--json")
    assert resumed.returncode == 0, f"trial {trial} (killed after {moment:.2f}s): {resumed.stderr[-2000:]}"


def assert_every_step_succeeded_once_and_no_result_was_lost(run_id, before, workspace, trial, moment) -> list:
    """The run succeeded, every attempt recorded `before` the resume is still there, each step
    succeeded once and ran once, and no attempt went unrecorded; the run's attempts."""
    session, attempts = recorded(run_id)
    assert session.status == "succeeded", f"trial {trial}: {session.status}"
    assert {(a.step_id, a.attempt) for a in before} <= {(a.step_id, a.attempt) for a in attempts}, f"trial {trial}: a result was lost"
    succeeded = Counter(a.step_id for a in attempts if a.result.status == "succeeded")
    assert succeeded == Counter({f"s{n}": 1 for n in range(1, 7)}), f"trial {trial}: {succeeded}"
    for step_id in succeeded:  # attempts are numbered without a gap: none went unrecorded
        numbers = sorted(a.attempt for a in attempts if a.step_id == step_id)
        assert numbers == list(range(1, len(numbers) + 1)), (trial, step_id, numbers)
    ran = (workspace / "ran.txt").read_text().split()
    told = [(a.step_id, a.attempt, a.result.status, a.result.exit_reason) for a in attempts]
    assert sorted(ran) == [f"s{n}" for n in range(1, 7)], f"trial {trial} (killed after {moment:.2f}s): a step ran twice or not at all: {ran}; attempts: {told}"
    return attempts
