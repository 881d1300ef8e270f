"""What a result means: judging it as its step expects, diagnoses and fingerprints, the heartbeat delay.
(The self-healing rules themselves, each on its own: tests/test_rules.py.)"""

from datetime import timedelta

import pytest

from autodev.core.commands import CommandResult
from autodev.core.diagnosis import diagnose, fingerprint
from autodev.core.models import utcnow


def result(status="failed", exit_code=1, tail="", reason=None) -> CommandResult:
    now = utcnow()
    return CommandResult(
        status=status, exit_code=exit_code, exit_reason=reason, started_at=now, finished_at=now + timedelta(seconds=1),
        output_tail=tail, log_path="/workspace/.autodev/logs/r/s.1.log",
    )


@pytest.mark.parametrize(
    ("res", "expected"),
    [
        (result(exit_code=127, tail="sh: 1: cargo: not found\n"), "command 'cargo' is not installed"),
        (result(tail="Traceback...\nModuleNotFoundError: No module named 'requests'\n"), "pip install requests"),
        (
            result(tail="FAILED tests/test_a.py::test_one - assert 1 == 2\nFAILED tests/test_b.py::test_two\n2 failed\n"),
            "fix the failing tests: tests/test_a.py::test_one, tests/test_b.py::test_two",
        ),
        (result(tail="touch: cannot touch '/etc/x': Permission denied\n"), "non-root user"),
        (result(exit_code=137, tail="Killed\n", reason="out of memory: the kernel's OOM killer ended it"), "ran out of memory"),
        (result(exit_code=137, tail="Killed\n", reason="killed by SIGKILL from inside the sandbox"), "something it ran sent"),
        (result(status="timed_out", exit_code=137, reason="killed after the 5s timeout"), "raise the step's timeout_s"),
        (result(status="stalled", exit_code=137), "does not wait for input"),
        (result(tail="curl: (6) Could not resolve host: example.org\n"), "network: true"),
        (result(exit_code=None, reason="docker engine lost: ConnectionError"), "autodev doctor"),
        (result(exit_code=3, tail="something odd\n"), "read the step's full log (/workspace/.autodev/logs/r/s.1.log)"),
    ],
)
def test_suggested_actions_come_from_the_evidence(res, expected):
    d = diagnose("some command", res, stall_timeout_s=5)
    assert expected in d.suggested_action
    assert d.summary.startswith(f"{res.status} with")


def test_fingerprints_ignore_numbers_but_not_the_failure():
    a = fingerprint("pytest", result(tail="1 failed in 0.53s\n"))
    assert a == fingerprint("pytest", result(tail="1 failed in 0.61s\n"))
    assert a != fingerprint("pytest", result(exit_code=2, tail="1 failed in 0.53s\n"))
    assert a != fingerprint("pytest", result(tail="1 error in 0.53s\n"))
    assert a != fingerprint("pytest -x", result(tail="1 failed in 0.53s\n"))


def test_heartbeat_delay():
    from autodev.core.recovery import HEARTBEAT_LATE_S, heartbeat_delay_s, heartbeat_is_late
    from autodev.core.session import Heartbeat, SessionMetadata

    now = utcnow()
    assert heartbeat_delay_s(SessionMetadata(), now) == float("inf")
    meta = SessionMetadata(orchestrator_heartbeat=Heartbeat(ts=now - timedelta(seconds=95), loop_status="waiting"))
    assert heartbeat_delay_s(meta, now) == pytest.approx(95) and heartbeat_delay_s(meta, now) > HEARTBEAT_LATE_S
    assert heartbeat_is_late(meta, "running", now) and not heartbeat_is_late(meta, "blocked", now)


def test_an_agent_that_made_no_edits_is_not_blamed_on_docker():
    from autodev.core.agent import AGENT_FAILED

    lost = diagnose("agent: do it", result(exit_code=None, reason=f"{AGENT_FAILED}model m failed: Timeout"))
    assert "coding agent produced no usable edits" in lost.suggested_action and "Docker" not in lost.suggested_action
    engine = diagnose("make", result(exit_code=None, reason="the Docker engine stopped answering"))
    assert "Docker engine went away" in engine.suggested_action


def step_of(**fields):
    from autodev.core.models import Step

    return Step(id="s", run="python -m pytest -q", **fields)


def test_a_test_first_check_succeeds_only_when_the_tests_fail():
    from autodev.core.engine.judge import judge

    red = judge(step_of(expect="tests-fail"), result(exit_code=1, tail="1 failed\n"))
    assert red.status == "succeeded" and "as they must" in red.exit_reason
    green = judge(step_of(expect="tests-fail"), result(status="succeeded", exit_code=0))
    assert green.status == "failed" and "do not test it" in green.exit_reason
    none = judge(step_of(expect="tests-fail"), result(exit_code=5, tail="no tests ran\n"))
    assert none.status == "failed"  # no tests at all is not a red test
    stalled = judge(step_of(expect="tests-fail"), result(status="stalled", exit_code=137))
    assert stalled.status == "stalled"


def test_failures_the_baseline_had_are_not_the_runs():
    from autodev.core.engine.judge import judge

    baseline = "FAILED tests/test_old.py::test_flaky - assert 1 == 2\n1 failed, 9 passed\n"
    old_only = judge(step_of(baseline="base"), result(exit_code=1, tail="FAILED tests/test_old.py::test_flaky\n1 failed\n"), baseline)
    assert old_only.status == "succeeded" and "already failed before the run" in old_only.exit_reason
    new = judge(step_of(baseline="base"), result(exit_code=1, tail="FAILED tests/test_old.py::test_flaky\nFAILED tests/test_new.py::test_x\n"), baseline)
    assert new.status == "failed"
    assert judge(step_of(expect="any"), result(exit_code=1, tail=baseline)).status == "succeeded"


def test_the_advice_tells_the_runs_failures_from_those_that_were_there_before():
    now = result(exit_code=1, tail="FAILED tests/test_old.py::test_csv - x\nFAILED tests/test_new.py::test_remove - y\n")
    advice = diagnose("pytest -q", now, baseline_output="FAILED tests/test_old.py::test_csv - x\n1 failed\n").suggested_action
    assert advice == (
        "fix the tests this run broke: tests/test_new.py::test_remove; "
        "already failing before the run (not this run's): tests/test_old.py::test_csv"
    )
