"""Starting a run's flow (src/autodev/flows/start.py): the flow run it creates is run, and a creation the
Prefect server refuses is tried again within tenths of a second, not after Prefect's 2, 4, 8 s,
however many times it is refused in a row.
The refusals come from a loopback proxy in front of the session's real Prefect server: it answers
the first creations with the status the server on SQLite answers when it meets another write."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_API_URL, temporary_settings

from autodev.flows.start import create_flow_run, start_flow

HOP_BY_HOP = {"host", "content-length", "connection", "accept-encoding", "transfer-encoding"}


class RefusingProxy:
    """Forwards every request to the Prefect API, except that it answers the first `refusals`
    flow-run creations (POST /flow_runs/) with `status`; counts the creations it saw."""

    def __init__(self, api_url: str, refusals: int, status: int) -> None:
        self.creations = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.forward(None)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.rstrip("/").endswith("/flow_runs"):
                    proxy.creations += 1
                    if proxy.creations <= refusals:
                        return self.answer(status, b'{"exception_message": "Service Unavailable"}')
                self.forward(body)

            def forward(self, body: bytes | None):
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                request = urllib.request.Request(api_url + self.path.removeprefix("/api"), data=body, headers=headers, method=self.command)
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        self.answer(response.status, response.read())
                except urllib.error.HTTPError as exc:
                    self.answer(exc.code, exc.read())

            def answer(self, code: int, payload: bytes):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@flow(name="autodev-start-test", persist_result=False)
def doubled(number: int, twice: bool = True) -> int:
    return number * 2 if twice else number


def created_through(proxy: RefusingProxy):
    with temporary_settings(updates={PREFECT_API_URL: proxy.url}):
        return create_flow_run(doubled, {"number": 4, "twice": True})


def test_start_flow_runs_the_flow_run_it_created_with_the_defaults_as_a_call_has_them(prefect_api):
    state = start_flow(doubled, number=21)
    assert state.is_completed() and state.result() == 42
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(state.state_details.flow_run_id)
    assert flow_run.parameters == {"number": 21, "twice": True}
    assert flow_run.state.is_completed()


@pytest.mark.parametrize(
    ("refusals", "within_s", "otherwise"),
    [
        (3, 1.5, "Prefect's own client waits 2 s after the first"),
        # 16 runs started together on two cores: the other runs' writes refused one creation 11
        # times in a row, and Prefect's own waits (2, 4, 8, 16, 32 s) started its flow a minute late.
        (9, 12.0, "Prefect's client tries a request 6 times, then its own waits add 2 + 4 + 8 s"),
    ],
)
def test_a_refused_flow_run_creation_is_tried_again_within_tenths_of_a_second(prefect_api, refusals, within_s, otherwise):
    proxy = RefusingProxy(prefect_api, refusals=refusals, status=503)
    try:
        started = time.monotonic()
        flow_run = created_through(proxy)
        took = time.monotonic() - started
    finally:
        proxy.close()
    assert proxy.creations == refusals + 1
    assert took < within_s, f"{refusals} refusals took {took:.2f} s: {otherwise}"
    with get_client(sync_client=True) as client:
        stored = client.read_flow_run(flow_run.id)
    assert stored.state.is_pending() and stored.parameters == {"number": 4, "twice": True}


def test_a_creation_the_server_rejects_fails_at_once_with_the_servers_answer(prefect_api):
    proxy = RefusingProxy(prefect_api, refusals=1, status=422)
    try:
        with pytest.raises(PrefectHTTPStatusError, match="422"):
            created_through(proxy)
    finally:
        proxy.close()
    assert proxy.creations == 1
