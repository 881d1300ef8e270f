"""The plan flow end to end: real Prefect server, real Docker sandbox, real state store."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from autodev.cli.exporter import StoreCollector
from tests.helpers import autodev_events, containers_of, run, store, task_runs

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def test_a_plan_runs_as_a_flow_with_one_task_per_step(prefect_api, docker_engine, tmp_path):
    state, report = run(
        """
project: happy
steps:
  - {id: write, run: "echo handed-over > note.txt"}
  - {id: read, run: "cat note.txt", depends_on: [write]}
  - {id: quiet, run: "true"}
""",
        tmp_path,
    )
    assert state.is_completed()
    assert report.status == "succeeded" and report.success_rate == 1.0
    assert [(s.id, s.status, s.exit_code) for s in report.steps] == [
        ("write", "succeeded", 0),
        ("read", "succeeded", 0),
        ("quiet", "succeeded", 0),
    ]
    assert report.steps[1].output_tail == "handed-over\n"
    assert_one_task_per_step_and_one_for_the_advice(prefect_api, report.run_id)
    assert_the_store_keeps_the_finished_run(report.run_id)
    assert_the_ui_shows_the_advice_evaluation_progress_steps_and_summary(prefect_api, report.run_id)

    log = tmp_path / ".autodev" / "logs" / report.run_id / "read.1.log"
    assert log.read_text() == "handed-over\n"
    assert not containers_of(docker_engine, report.run_id)

    events = sorted(autodev_events(prefect_api, report.run_id), key=lambda e: e["occurred"])
    names = [e["event"] for e in events if e["event"] != "autodev.heartbeat"]
    assert names[0] == "autodev.run.started" and names[-1] == "autodev.run.finished"
    assert names.count("autodev.command.finished") == 3


def assert_one_task_per_step_and_one_for_the_advice(prefect_api: str, run_id: str) -> None:
    names = sorted(t["name"] for t in task_runs(prefect_api, run_id, ["write", "read", "quiet", "insights"]))
    assert [n for n in names if n != "insights"] == ["quiet", "read", "write"]
    assert "insights" in names  # the advice is computed as its own task


def assert_the_store_keeps_the_finished_run(run_id: str) -> None:
    """The happy plan's session: done, nothing queued or blocking, every command and attempt kept."""
    s = store()
    session = s.sessions.get(run_id)
    assert session.status == "succeeded" and session.metadata.phase == "done"
    assert session.metadata.queue == [] and session.metadata.blockers == []
    assert [h.step_id for h in session.metadata.command_history] == ["write", "read", "quiet"]
    assert session.metadata.last_command_result.exit_code == 0
    assert len(s.attempts.of(run_id)) == 3
    s.close()


def assert_the_ui_shows_the_advice_evaluation_progress_steps_and_summary(prefect_api: str, run_id: str) -> None:
    """The happy plan's artifacts on its flow run, as the Prefect UI lists them."""
    artifacts = httpx.post(
        f"{prefect_api}/artifacts/latest/filter", json={"artifacts": {"flow_run_id": {"any_": [run_id]}}}
    ).json()
    by_key = {a["key"]: a for a in artifacts}
    assert set(by_key) == {"autodev-progress", "autodev-steps", "autodev-run-summary", "insights-happy", "evaluation-happy"}
    assert "# Next steps (confidence" in by_key["insights-happy"]["data"]
    assert "| 100% |" in by_key["evaluation-happy"]["data"] and "Plan from: plan" in by_key["evaluation-happy"]["data"]
    assert by_key["autodev-progress"]["data"] == 100
    table = json.loads(by_key["autodev-steps"]["data"])
    assert [(row["step"], row["state"]) for row in table] == [("write", "succeeded"), ("read", "succeeded"), ("quiet", "succeeded")]
    assert "# Run succeeded" in by_key["autodev-run-summary"]["data"] and "heartbeat" in by_key["autodev-run-summary"]["data"]


def test_a_failed_step_fails_the_flow_skips_downstream_and_records_a_blocker(prefect_api, docker_engine, tmp_path):
    state, report = run(
        """
project: sad
steps:
  - {id: build, run: "echo compiling; echo 'error: missing semicolon' >&2; exit 2"}
  - {id: test, run: "echo never", depends_on: [build]}
  - {id: package, run: "echo never", depends_on: [test]}
  - {id: lint, run: "echo independent"}
""",
        tmp_path,
    )
    assert state.is_failed()
    assert report.status == "failed"
    by_id = {s.id: s for s in report.steps}
    assert (by_id["build"].status, by_id["build"].exit_code) == ("failed", 2)
    assert by_id["test"].status == by_id["package"].status == "skipped"
    assert by_id["lint"].status == "succeeded"
    assert report.success_rate == 0.25

    (blocker,) = blockers_of(report.run_id)
    assert blocker.step_id == "build" and blocker.exit_code == 2
    assert "error: missing semicolon" in blocker.summary
    # The seed's orchestrator_command_failures_total, as `autodev metrics serve` derives it from the store.
    assert command_failures_from_the_store() == {"orchestrator_command_failures": 1}

    runs = task_runs(prefect_api, report.run_id, ["build", "lint"])
    states = {t["name"]: t["state"]["type"] for t in runs if t["name"] != "insights"}
    assert states == {"build": "FAILED", "lint": "COMPLETED"}
    assert_one_failure_event_tells_the_step_command_and_error(prefect_api, report.run_id)
    assert not containers_of(docker_engine, report.run_id)


def blockers_of(run_id: str) -> list:
    s = store()
    meta = s.sessions.get(run_id).metadata
    s.close()
    return meta.blockers


def command_failures_from_the_store() -> dict[str, float]:
    s = store()
    samples = {m.name: m.samples[0].value for m in StoreCollector(s).collect() if m.name == "orchestrator_command_failures"}
    s.close()
    return samples


def assert_one_failure_event_tells_the_step_command_and_error(prefect_api: str, run_id: str) -> None:
    events = autodev_events(prefect_api, run_id)
    (failed,) = [e for e in events if e["event"] == "autodev.command.failed"]
    assert failed["payload"]["step"] == "build" and failed["payload"]["exit_code"] == 2
    assert failed["payload"]["command"].startswith("echo compiling")
    assert "missing semicolon" in failed["payload"]["summary"]


def test_retries_run_the_step_again_and_keep_every_attempt(prefect_api, docker_engine, tmp_path):
    _, report = run(
        """
project: flaky
steps:
  - id: flaky
    run: "if [ -f seen ]; then echo second-time-lucky; else touch seen; echo first-fails; exit 1; fi"
    retries: 2
""",
        tmp_path,
    )
    assert report.status == "succeeded"
    assert report.steps[0].attempts == 2 and report.steps[0].output_tail == "second-time-lucky\n"
    s = store()
    attempts = s.attempts.of(report.run_id)
    s.close()
    assert [(a.attempt, a.result.exit_code) for a in attempts] == [(1, 1), (2, 0)]


def test_independent_steps_run_in_parallel_up_to_the_limit(prefect_api, docker_engine, tmp_path):
    plan = """
project: parallel
max_parallel: {n}
steps:
  - {{id: a, run: "sleep 1.5"}}
  - {{id: b, run: "sleep 1.5"}}
  - {{id: c, run: "sleep 1.5"}}
"""
    started = time.monotonic()
    _, report = run(plan.format(n=3), tmp_path / "p3")
    parallel = time.monotonic() - started
    assert report.status == "succeeded"
    started = time.monotonic()
    run(plan.format(n=1), tmp_path / "p1")
    sequential = time.monotonic() - started
    assert sequential >= 4.5
    assert parallel < sequential - 2.0


def test_a_timed_out_step_is_reported_and_the_run_goes_on(prefect_api, docker_engine, tmp_path):
    _, report = run(
        f"""
project: slow-{uuid.uuid4().hex[:6]}
steps:
  - {{id: hang, run: "sleep 120", timeout_s: 1.5}}
  - {{id: next, run: "echo container-still-alive"}}
""",
        tmp_path,
    )
    by_id = {s.id: s for s in report.steps}
    assert (by_id["hang"].status, by_id["hang"].exit_code) == ("timed_out", 137)
    assert by_id["next"].output_tail == "container-still-alive\n"
    assert report.status == "failed"


def test_a_dashboard_the_prefect_api_refuses_is_a_warning_and_the_run_goes_on(prefect_api, docker_engine, tmp_path, monkeypatch):
    """The live table is sent from a thread of its own: when the API refuses it, the run's log
    says so and every step still runs."""

    def refused(**_):
        raise RuntimeError("the API answered 503")

    monkeypatch.setattr("autodev.flows.dashboard.create_table_artifact", refused)
    state, report = run("project: refused-table\nsteps:\n  - {id: one, run: 'true'}\n  - {id: two, run: 'true', depends_on: [one]}\n", tmp_path)
    assert state.is_completed() and [s.status for s in report.steps] == ["succeeded", "succeeded"]
    query = {"logs": {"flow_run_id": {"any_": [report.run_id]}}, "limit": 200}
    for _ in range(50):  # the server takes in logs in batches
        messages = [entry["message"] for entry in httpx.post(f"{prefect_api}/logs/filter", json=query).json()]
        if any("could not update the run's dashboard" in m for m in messages):
            break
        time.sleep(0.2)
    assert "could not update the run's dashboard: RuntimeError: the API answered 503" in messages
