"""The egress allow-list in a real sandbox (`network: {allow: [...]}`), through `autodev exec`:
the sandbox has no network of its own and reaches only the listed hosts, through autodev's proxy
and its relay (engine started with --bridge=none: no bridge needed). A loopback server on the
list is reached; another is refused, recorded with the step's attempt and named in the advice;
a direct connection gets nowhere; real Codex reaches its model server (allowed from its base URL)
while the server it is told to fetch is refused; a proxy that dies mid-step fails it closed,
saying why, and the next step has its proxy again."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import docker
import pytest

from autodev.blocks.sandbox.egress import RELAY_FOLDER
from tests.helpers import exec_json, store
from tests.scripted_responses import ScriptedResponses, message, shell
from tests.test_codex import SECRET, codex_plan
from tests.test_egress import hello_server
from tests.test_recovery import wait_for_session

pytestmark = [pytest.mark.slow, pytest.mark.docker]
FETCH = "python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:{port}/', timeout=10).read().decode())\""
DIRECT = "python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5)\""


def results(run_id: str) -> dict:
    s = store()
    found = {a.step_id: a.result for a in s.attempts.of(run_id)}
    s.close()
    return found


def test_the_sandbox_reaches_only_the_listed_hosts_and_the_advice_names_what_was_refused(prefect_api, tmp_path):
    with hello_server() as ok, hello_server() as other:
        plan = {
            "project": "egress", "network": {"allow": [f"127.0.0.1:{ok}"]}, "defaults": {"retries": 0},
            "steps": [{"id": "allowed", "run": FETCH.format(port=ok)},
                      {"id": "refused", "run": FETCH.format(port=other)},
                      {"id": "direct", "run": DIRECT.format(port=ok)}],
        }  # fmt: skip
        done, report = exec_json(plan, tmp_path / "ws", dict(os.environ))
    assert done.returncode == 1, done.stderr[-3000:]
    got = results(report["run_id"])
    assert got["allowed"].status == "succeeded" and f"hello from {ok}" in got["allowed"].output_tail
    assert got["refused"].status == "failed" and "403" in got["refused"].output_tail
    assert got["refused"].refused == [f"127.0.0.1:{other}"] and got["allowed"].refused == []
    assert got["direct"].status == "failed"  # no network of its own: the proxy is the only way out
    advice = json.dumps(report["next_actions"])
    assert f"step refused: the step tried to reach 127.0.0.1:{other}, which the allow-list refuses" in advice


def test_codex_reaches_its_model_and_nothing_else(prefect_api, agent_image, tmp_path):
    with hello_server() as other:
        script = [shell(FETCH.format(port=other)), message("could not fetch it")]
        with ScriptedResponses(script) as model:
            plan = codex_plan(agent_image("codex"), model) | {"network": {"allow": []}}
            plan["steps"] = plan["steps"][:1]
            env = {**os.environ, "SCRIPTED_API_KEY": SECRET}
            done, report = exec_json(plan, tmp_path / "ws", env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(model.requests) == 2  # the model was reached, through the proxy (its base URL is allowed)
    (greet,) = [r for r in results(report["run_id"]).values()]
    assert f"127.0.0.1:{other}" in greet.refused, greet.refused  # (and what Codex reaches for itself: docs/agents.md)
    (named,) = [line for line in report["next_actions"] if line.startswith("step greet: the agent tried to reach")]
    assert f"127.0.0.1:{other}" in named and "which the allow-list refuses" in named


def test_a_proxy_that_dies_fails_the_step_closed_and_says_why(prefect_api, tmp_path):
    workspace = tmp_path / "ws"
    with hello_server() as ok:
        plan = {
            "project": "egress", "network": {"allow": [f"127.0.0.1:{ok}"]}, "defaults": {"retries": 0},
            "steps": [{"id": "cut", "run": "touch started; sleep 3; " + FETCH.format(port=ok)},
                      {"id": "after", "run": FETCH.format(port=ok), "depends_on": []}],
        }  # fmt: skip
        threading.Thread(target=kill_the_proxy_once, args=(workspace / "started",), daemon=True).start()
        done, report = exec_json(plan, workspace, dict(os.environ))
    got = results(report["run_id"])
    assert got["cut"].status == "failed" and "egress proxy stopped" in got["cut"].exit_reason
    assert "HTTP Error 502: autodev egress proxy not running (no network)" in got["cut"].output_tail
    assert got["after"].status == "succeeded"  # started again for the next command


def kill_the_proxy_once(started: Path) -> None:
    """Once the step began: kill the egress proxy autodev started for this run (found by the
    folder its relay container mounts), by its process id."""
    deadline = time.monotonic() + 60
    while not started.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    client = docker.from_env()
    (relay,) = client.containers.list(filters={"label": ["autodev.egress=relay", f"autodev.run_id={wait_for_session().run_id}"]})
    folder = next(m["Source"] for m in relay.attrs["Mounts"] if m["Destination"] == RELAY_FOLDER)
    client.close()
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            args = (proc / "cmdline").read_bytes().decode().split("\0")
            if "autodev.blocks.sandbox.egress_proxy" in args and f"{folder}/proxy.sock" in args:
                os.kill(int(proc.name), signal.SIGKILL)
