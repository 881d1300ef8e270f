"""Automations deliver notifications to a real HTTP receiver, through a real Prefect server."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tests.helpers import run

pytestmark = [pytest.mark.slow, pytest.mark.docker]


class Receiver:
    """An HTTP server on loopback that keeps every JSON body POSTed to it; stops with the test."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, event: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for body in self.bodies:
                if body.get("event") == event:
                    return body
            time.sleep(0.2)
        raise AssertionError(f"no {event} notification; got {[b.get('event') for b in self.bodies]}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_a_blocked_run_notifies_with_the_evidence_and_apply_is_idempotent(prefect_api, docker_engine, receiver, tmp_path):
    from prefect.client.orchestration import get_client

    from autodev.flows.automations import apply

    names = apply(receiver.url, "http://127.0.0.1:4200")
    apply(receiver.url, "http://127.0.0.1:4200")  # a second apply updates, never duplicates
    with get_client(sync_client=True) as client:
        for name in names:
            assert len(client.read_automations_by_name(name)) == 1, name
    time.sleep(2)  # the server's trigger service loads new automations

    started = time.monotonic()
    _, report = run(
        """
project: notify-me
defaults: {stall_timeout_s: 1, max_stall_retries: 0}
steps:
  - {id: quiet, run: "echo before the silence; sleep 600", task: Stay quiet}
""",
        tmp_path,
    )
    assert report.status == "blocked"
    blocked = receiver.wait_for("autodev.run.blocked")
    stalled = receiver.wait_for("autodev.step.stalled")
    delivered_after = time.monotonic() - started

    assert blocked["run"] == report.run_id and blocked["run_id"] == report.run_id
    assert blocked["project"] == "notify-me" and blocked["step"] == "quiet"
    assert blocked["command"] == "echo before the silence; sleep 600" and blocked["exit_code"] == 137
    assert blocked["reason"] == "stall" and "killed after 1s without new output" in blocked["summary"]
    assert "stall_timeout_s" in blocked["suggested_action"]
    assert blocked["link"] == f"http://127.0.0.1:4200/runs/flow-run/{report.run_id}"
    assert blocked["text"].startswith("autodev run blocked: notify-me step quiet - stalled")
    assert stalled["step"] == "quiet" and stalled["exit_code"] == 137
    support = receiver.wait_for("autodev.insight.changed")  # the decision-support notification
    assert support["run"] == report.run_id and "does not wait for input" in support["suggested_action"]
    assert f"autodev resume {report.run_id} --action retry" in support["suggested_action"]
    assert delivered_after < 60
    assert_morning_report(receiver, report.run_id)


def assert_morning_report(receiver: Receiver, run_id: str) -> None:
    """The run's end notifies each task's outcome, and what the blocked one needs."""
    finished = receiver.wait_for("autodev.run.finished")
    assert finished["run"] == run_id and finished["reason"] == "blocked"
    assert finished["summary"].startswith("1 blocked of 1 tasks; Stay quiet: blocked (stalled")
    assert finished["suggested_action"].endswith(f"-> autodev resume {run_id} --step quiet --action retry")
    assert [(t["task"], t["status"]) for t in finished["tasks"]] == [("Stay quiet", "blocked")]
    assert finished["text"].startswith("autodev run finished: notify-me - 1 blocked of 1 tasks")


def test_a_run_whose_heartbeats_stop_is_reported_late(prefect_api, receiver):
    """The proactive automation: a heartbeat, then silence, for a (forged) running flow run."""
    import uuid

    from prefect.events import emit_event

    from autodev.flows.automations import apply

    apply(receiver.url, "http://127.0.0.1:4200", heartbeat_late_s=10)
    time.sleep(2)
    flow_run = str(uuid.uuid4())
    resource = {"prefect.resource.id": f"prefect.flow-run.{flow_run}", "autodev.run_id": flow_run, "autodev.project": "silent"}
    emit_event(event="autodev.heartbeat", resource=resource, payload={"loop_status": "waiting for build", "running": ["build"]})
    started = time.monotonic()
    late = receiver.wait_for("autodev.heartbeat", timeout=60)
    assert late["run"] == flow_run and late["project"] == "silent"
    assert late["text"].startswith("autodev orchestrator heartbeat late: silent")
    assert 8 <= time.monotonic() - started < 40  # not before the 10 s are up
