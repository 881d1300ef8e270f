"""The egress allow-list without Docker: what an entry may say (and the error for one that is no
host), which hosts each step may reach, and the real proxy (`egress_proxy.py`, a process on a
Unix socket) in front of two loopback HTTP servers: the allowed one is reached, by a plain HTTP
request and through a CONNECT tunnel; the other is refused (403) and recorded under the step and
attempt its proxy credentials name; a name that leads to loopback is refused; a request without
credentials is asked for them (407), one it cannot read answered 400; a proxy that dies is
noticed and started again."""

from __future__ import annotations

import base64
import http.server
import os
import re
import socket
import threading
from contextlib import contextmanager

import pytest

from autodev.blocks.sandbox.egress import EgressGate
from autodev.core.allowlist import egress_rules
from autodev.core.egress import PLAN_WIDE, EgressRules, allowed, check_entry
from autodev.core.errors import BadInput
from autodev.core.plan import parse_plan


@pytest.mark.parametrize("entry", ["api.openai.com", "*.anthropic.com", "127.0.0.1:8080", "PyPI.org", "[::1]:443", "10.0.0.5"])
def test_host_names_addresses_and_ports_are_entries(entry):
    assert check_entry(entry) == entry.lower()


@pytest.mark.parametrize("entry", ["https://api.openai.com", "api.openai.com/v1", "two words", "*", "host:99999", "-x.com"])
def test_anything_else_is_refused_naming_the_entry(entry):
    with pytest.raises(ValueError, match=f"entry {re.escape(repr(entry))} is not a host name.*no scheme, no path"):
        check_entry(entry)


@pytest.mark.parametrize(
    ("entry", "why"),
    [("localhost:8080", "localhost is the sandbox's own"), ("*.com", "a whole top-level domain"),
     ("127.0.0.1", "would open every service of this machine: give its port")],
)  # fmt: skip
def test_entries_that_would_open_too_much_are_refused(entry, why):
    with pytest.raises(ValueError, match=re.escape(why)):
        check_entry(entry)


def test_a_plan_with_a_bad_entry_is_bad_input_naming_it():
    with pytest.raises(BadInput, match="network allow-list entry 'https://pypi.org' is not a host name"):
        parse_plan("project: p\nnetwork: {allow: [https://pypi.org]}\nsteps:\n  - {id: a, run: 'true'}\n")
    with pytest.raises(BadInput, match=r"top level field 'network': \[1\]: use false, true, host"):
        parse_plan("project: p\nnetwork: [1]\nsteps:\n  - {id: a, run: 'true'}\n")


def test_a_steps_allow_list_needs_the_plans():
    with pytest.raises(BadInput, match="step 'a' field 'network': a step's allow-list adds hosts to the plan's"):
        parse_plan("project: p\nnetwork: true\nsteps:\n  - {id: a, run: 'true', network: {allow: [pypi.org]}}\n")


def test_what_an_entry_allows():
    entries = ["api.openai.com", "*.anthropic.com", "127.0.0.1:8080"]
    assert allowed("API.openai.com", 443, entries) and allowed("api.anthropic.com", 443, entries)
    assert not allowed("anthropic.com", 443, entries) and not allowed("evil-anthropic.com", 443, entries)
    assert allowed("127.0.0.1", 8080, entries) and not allowed("127.0.0.1", 8081, entries)
    assert not allowed("pypi.org", 443, entries)


def test_each_step_may_reach_the_plans_hosts_its_own_and_its_agents_models():
    plan = parse_plan("""
project: p
network: {allow: [pypi.org]}
agent: codex
agent_args: "-c 'model_providers.local.base_url=\\"http://127.0.0.1:4000/v1\\"'"
steps:
  - {id: setup, run: "pip install -e .", network: {allow: [files.pythonhosted.org]}}
  - {id: code, kind: agent, agent: claude, instruction: "do it", env: {ANTHROPIC_BASE_URL: "https://llm.example.com:8443"}}
  - {id: more, kind: agent, instruction: "more"}
""")
    rules = egress_rules(plan)
    assert rules is not None and rules.for_step("setup")[-1] == "files.pythonhosted.org"
    wide = rules.hosts[PLAN_WIDE]
    assert wide[0] == "pypi.org" and {"api.anthropic.com", "llm.example.com:8443", "api.openai.com", "127.0.0.1:4000"} <= set(wide)
    assert "files.pythonhosted.org" not in rules.for_step("code")
    assert egress_rules(parse_plan("project: p\nnetwork: true\nsteps:\n  - {id: a, run: 'true'}\n")) is None


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from {self.server.server_address[1]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextmanager
def hello_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def through(gate: EgressGate, head: str) -> bytes:
    """Send one request head to the proxy's socket; everything it answers."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(gate.folder / "proxy.sock"))
        sock.sendall(head.encode())
        if head.startswith("CONNECT"):
            established = sock.recv(4096)
            if b" 200 " not in established:
                return established
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
        return b"".join(chunks)


def test_the_proxy_lets_the_allowed_through_and_records_what_it_refuses():
    auth = "Proxy-Authorization: Basic " + base64.b64encode(b"fetch:2").decode()
    with hello_server() as ok, hello_server() as other:
        rules = EgressRules(hosts={PLAN_WIDE: [f"127.0.0.1:{ok}", f"localhost:{other}"]})
        gate = EgressGate(rules, "run-x", f"{os.getuid()}:{os.getgid()}")
        try:
            plain = through(gate, f"GET http://127.0.0.1:{ok}/ HTTP/1.1\r\nHost: 127.0.0.1:{ok}\r\n{auth}\r\n\r\n")
            tunnel = through(gate, f"CONNECT 127.0.0.1:{ok} HTTP/1.1\r\nHost: 127.0.0.1:{ok}\r\n{auth}\r\n\r\n")
            refused = through(gate, f"GET http://127.0.0.1:{other}/ HTTP/1.1\r\nHost: x\r\n{auth}\r\n\r\n")
            assert b"200 OK" in plain and f"hello from {ok}".encode() in plain
            assert f"hello from {ok}".encode() in tunnel
            assert b"403 Forbidden" in refused and f"allow-list refuses 127.0.0.1:{other}".encode() in refused
            (refusal,) = gate.refused("fetch", 2)
            assert (refusal.host, refusal.port, refusal.target) == ("127.0.0.1", other, f"127.0.0.1:{other}")
            assert gate.refused("fetch", 1) == []
            # A name that leads to this machine's loopback is refused, even on the list: only the address reaches it.
            assert b"403 Forbidden" in through(gate, f"GET http://localhost:{other}/ HTTP/1.1\r\nHost: x\r\n{auth}\r\n\r\n")
            asked = through(gate, f"GET http://127.0.0.1:{ok}/ HTTP/1.1\r\nHost: x\r\n\r\n")  # no credentials: asked for them
            assert b"407 Proxy Authentication Required" in asked and b'Proxy-Authenticate: Basic realm="autodev"' in asked
            assert b"400 Bad Request" in through(gate, f"GET http://127.0.0.1:99999/ HTTP/1.1\r\nHost: x\r\n{auth}\r\n\r\n")
        finally:
            gate.close()
    assert not gate.folder.exists()


def test_a_proxy_that_died_is_noticed_and_started_again():
    auth = "Proxy-Authorization: Basic " + base64.b64encode(b"fetch:1").decode()
    with hello_server() as ok:
        gate = EgressGate(EgressRules(hosts={PLAN_WIDE: [f"127.0.0.1:{ok}"]}), "run-x", f"{os.getuid()}:{os.getgid()}")
        try:
            assert gate.revive() is None  # it runs
            gate._proxy.kill()
            gate._proxy.wait()
            assert "egress proxy stopped (exit code -9)" in gate.revive()
            assert b"200 OK" in through(gate, f"GET http://127.0.0.1:{ok}/ HTTP/1.1\r\nHost: x\r\n{auth}\r\n\r\n")
        finally:
            gate.close()
