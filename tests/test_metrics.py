"""Prometheus metrics from the state store: exporter values, incremental scrapes, a real Prometheus."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from autodev.blocks.store import StateStore
from autodev.cli.exporter import serve
from autodev.core.commands import CommandResult, StepAttempt
from autodev.core.models import utcnow
from autodev.core.plan import parse_plan
from autodev.core.session import RunWrite

PLAN = parse_plan("project: metered\nsteps:\n  - {id: a, run: 'true'}\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def add_attempts(store, run_id: str, statuses: list[str], seconds: float = 2.0, trip_on: str = "timed_out") -> None:
    now = utcnow()
    start = len(store.attempts.of(run_id))
    for i, status in enumerate(statuses, start=start + 1):
        result = CommandResult(
            status=status, exit_code=0 if status == "succeeded" else 1, started_at=now, finished_at=now + timedelta(seconds=seconds)
        )
        attempt = StepAttempt(run_id=run_id, step_id="a", attempt=i, command="true", result=result, breaker_tripped=status == trip_on)
        store.write(RunWrite(run_id=run_id, attempts=[attempt]))


@pytest.mark.postgres
def test_exporter_counts_from_the_store_and_reads_only_new_rows(database_url):
    store = StateStore(database_url=database_url).connect()
    run_id = uuid.uuid4().hex
    store.sessions.create(run_id, PLAN, "/tmp", None)
    add_attempts(store, run_id, ["succeeded", "failed", "stalled", "timed_out"])
    port = free_port()
    server, _ = serve(StateStore(database_url=database_url).connect(), "127.0.0.1", port)
    try:
        first = scrape(port)
        assert first[("orchestrator_command_failures_total", ())] == 3
        assert first[("orchestrator_commands_total", (("status", "failed"),))] == 1
        assert first[("orchestrator_stalls_total", ())] == 1
        assert first[("orchestrator_breaker_trips_total", ())] == 1
        assert first[("orchestrator_step_duration_seconds_count", (("status", "succeeded"),))] == 1
        assert first[("orchestrator_step_duration_seconds_bucket", (("le", "1.0"), ("status", "succeeded")))] == 0
        assert first[("orchestrator_step_duration_seconds_bucket", (("le", "5.0"), ("status", "succeeded")))] == 1
        assert first[("orchestrator_runs", (("status", "running"),))] == 1
        age = first[("orchestrator_heartbeat_age_seconds", (("project", "metered"), ("run_id", run_id)))]
        assert 0 <= age < 60

        add_attempts(store, run_id, ["failed", "failed"])
        second = scrape(port)  # the new rows are added to the running totals, nothing counted twice
        assert second[("orchestrator_command_failures_total", ())] == 5
        assert second[("orchestrator_commands_total", (("status", "failed"),))] == 3
        assert scrape(port)[("orchestrator_command_failures_total", ())] == 5
    finally:
        server.shutdown()
        store.close()


@pytest.mark.slow
@pytest.mark.docker
def test_a_real_prometheus_scrapes_the_failures_of_real_commands(prefect_api, docker_engine, tmp_path):
    from autodev.core.settings import load_settings
    from tests.helpers import run

    _, report = run(
        """
project: scraped
steps:
  - {id: one, run: "exit 3"}
  - {id: two, run: "no-such-tool --version"}
  - {id: three, run: "echo fine"}
""",
        tmp_path / "ws",
    )
    assert [s.exit_code for s in report.steps] == [3, 127, 0]

    exporter_port, prom_port = free_port(), free_port()
    server, _ = serve(StateStore(database_url=load_settings().database_url).connect(), "127.0.0.1", exporter_port)
    try:
        with prometheus_scraping(exporter_port, prom_port, tmp_path):
            assert first_answer(prom_port, "orchestrator_command_failures_total") == 2
    finally:
        server.shutdown()


@contextmanager
def prometheus_scraping(exporter_port: int, prom_port: int, tmp_path: Path) -> Iterator[None]:
    """A real Prometheus on 127.0.0.1:prom_port scraping the exporter every second; stopped after."""
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: autodev\n    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n"
    )
    prometheus = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        prometheus.terminate()
        prometheus.wait(30)


def first_answer(prom_port: int, expression: str, timeout_s: float = 60) -> float | None:
    """The value of the first non-empty answer Prometheus gives to `expression` (it answers empty
    until it has scraped); None if none came within `timeout_s`."""
    query = f"http://127.0.0.1:{prom_port}/api/v1/query?query={expression}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            result = json.load(urllib.request.urlopen(query, timeout=2))["data"]["result"]
        except OSError:
            continue  # Prometheus still starting
        if result:
            return float(result[0]["value"][1])
    return None
