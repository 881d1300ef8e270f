"""Stalls, the failure breaker and the heartbeat, with real hanging and failing commands."""

from __future__ import annotations

import pytest

from tests.helpers import autodev_events, containers_of, run, store

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def test_a_silent_command_is_caught_retried_then_blocks_the_run(prefect_api, docker_engine, tmp_path):
    state, report = run(
        """
project: hang
defaults: {stall_timeout_s: 2}
steps:
  - {id: hang, run: "echo partial output; sleep 600"}
  - {id: after, run: "echo never", depends_on: [hang]}
""",
        tmp_path,
    )
    assert state.is_failed() and report.status == "blocked"
    hang, after = report.steps
    assert (hang.status, hang.attempts, hang.exit_code) == ("blocked", 2, 137)
    assert hang.output_tail == "partial output\n"  # partial output is kept
    assert after.status == "pending"  # not skipped: a person may still retry or skip `hang`

    s = store()
    attempts = s.attempts.of(report.run_id)
    meta = s.sessions.get(report.run_id).metadata
    s.close()
    assert [a.result.status for a in attempts] == ["stalled", "stalled"]
    for a in attempts:  # caught within a second of its stall timeout
        assert 2.0 <= a.result.duration_s < 3.0, a.result.duration_s
    assert meta.blockers[-1].kind == "stall" and "does not wait for input" in meta.blockers[-1].suggested_action
    assert meta.phase == "blocked"

    events = autodev_events(prefect_api, report.run_id)
    names = [e["event"] for e in events]
    assert names.count("autodev.step.stalled") == 2
    (blocked,) = [e for e in events if e["event"] == "autodev.run.blocked"]
    assert blocked["payload"]["reason"] == "stall" and blocked["payload"]["step"] == "hang"
    assert "stall_timeout_s" in blocked["payload"]["suggested_action"]
    assert not containers_of(docker_engine, report.run_id)


def test_steady_output_longer_than_the_stall_timeout_is_never_flagged(prefect_api, docker_engine, tmp_path):
    _, report = run(
        """
project: steady
steps:
  - {id: checks, run: "for f in a b c d e f g h i j k l; do echo checking $f; sleep 0.5; done", stall_timeout_s: 2}
  - {id: ticks, run: "for i in $(seq 1 12); do echo tick $i; sleep 0.5; done", stall_timeout_s: 2, stall_clock: output}
  - {id: counter, run: "for i in $(seq 1 14); do echo tick-$i; sleep 0.5; done", stall_timeout_s: 2}
""",
        tmp_path,
    )
    assert report.status == "succeeded" and [s.attempts for s in report.steps] == [1, 1, 1]
    assert report.steps[0].output_tail.count("checking") == 12 and report.steps[1].output_tail.count("tick") == 12
    assert report.steps[2].output_tail.count("tick-") == 14  # a counter that advances is progress, on the progress clock


def test_a_command_that_only_repeats_itself_is_a_stall(prefect_api, docker_engine, tmp_path):
    _, report = run(
        """
project: loop
defaults: {stall_timeout_s: 2, max_stall_retries: 0}
steps:
  - {id: reconnect, run: "echo connecting; for i in $(seq 1 40); do echo Reconnecting... $i/40; sleep 0.25; done"}
""",
        tmp_path,
    )
    (step,) = report.steps
    assert (report.status, step.status, step.exit_code) == ("blocked", "blocked", 137)
    assert "Reconnecting... 7/40" in step.output_tail and "Reconnecting... 12/40" not in step.output_tail
    s = store()
    (attempt,) = s.attempts.of(report.run_id)
    blocker = s.sessions.get(report.run_id).metadata.blockers[-1]
    s.close()
    assert 2.0 <= attempt.result.duration_s < 3.0 and "only lines that repeat" in attempt.result.exit_reason
    assert "stall_clock: output" in blocker.suggested_action


def test_the_breaker_trips_on_the_third_identical_failure(prefect_api, docker_engine, tmp_path):
    _, report = run(
        """
project: wall
steps:
  - {id: wall, run: "echo 'ModuleNotFoundError: No module named requests2'; exit 1", retries: 5}
""",
        tmp_path,
    )
    assert report.status == "blocked"
    assert report.steps[0].status == "blocked" and report.steps[0].attempts == 3  # not 6
    events = autodev_events(prefect_api, report.run_id)
    (tripped,) = [e for e in events if e["event"] == "autodev.breaker.tripped"]
    assert tripped["payload"]["threshold"] == 3
    assert "pip install requests2" in tripped["payload"]["suggested_action"]
    (blocked,) = [e for e in events if e["event"] == "autodev.run.blocked"]
    assert blocked["payload"]["reason"] == "breaker"
    s = store()
    assert [a.breaker_tripped for a in s.attempts.of(report.run_id)] == [False, False, True]
    s.close()


def test_different_failures_do_not_trip_the_breaker(prefect_api, docker_engine, tmp_path):
    _, report = run(
        """
project: varied
steps:
  - id: varied
    run: "n=$(cat n 2>/dev/null || echo a); echo \\"error kind $n\\"; case $n in a) echo b;; b) echo c;; *) echo d;; esac > n; exit 1"
    retries: 3
""",
        tmp_path,
    )
    assert report.status == "failed"  # retries ran out; never blocked
    assert report.steps[0].status == "failed" and report.steps[0].attempts == 4


def test_heartbeat_and_last_output_are_recorded_while_a_step_runs(prefect_api, docker_engine, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTODEV_HEARTBEAT_INTERVAL_S", "0.5")
    _, report = run(
        """
project: beat
steps:
  - {id: slow, run: "echo start; sleep 2.5; echo end"}
""",
        tmp_path,
    )
    s = store()
    meta = s.sessions.get(report.run_id).metadata
    s.close()
    assert meta.orchestrator_heartbeat is not None
    assert meta.orchestrator_heartbeat.loop_status == "handled slow: succeeded"
    assert meta.last_output_at is not None
    beats = [e for e in autodev_events(prefect_api, report.run_id) if e["event"] == "autodev.heartbeat"]
    assert len(beats) >= 3  # while `slow` was running, not only at the end
    assert any(b["payload"]["running"] == ["slow"] for b in beats)


def test_advice_is_recorded_and_only_changes_are_announced(prefect_api, docker_engine, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTODEV_HEARTBEAT_INTERVAL_S", "0.01")  # advise after every result
    _, report = run(
        """
project: advised
steps:
  - {id: a, run: "true"}
  - {id: b, run: "true"}
  - {id: c, run: "true"}
  - {id: d, run: "echo result > out.txt"}
""",
        tmp_path,
    )
    s = store()
    meta = s.sessions.get(report.run_id).metadata
    s.close()
    assert report.next_actions == meta.advice
    assert meta.advice == ["review the result and move on to the next requirement"]
    assert [r.action for r in meta.next_actions.recommendations] == meta.advice  # the seed's structure
    assert meta.next_actions.evidence["steps"]["succeeded"] == 4
    changes = [e for e in autodev_events(prefect_api, report.run_id) if e["event"] == "autodev.insight.changed"]
    # four pieces of advice were computed; only the first and the final one differ
    assert [c["payload"]["suggested_action"] for c in changes] == [
        "nothing to do yet: let the run go on",
        "review the result and move on to the next requirement",
    ]
