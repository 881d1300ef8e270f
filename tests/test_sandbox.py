"""The Docker sandbox against the real engine: a corpus of command behaviours.

Commands run through the same pieces as a plan step (sandbox session + output capture), one
container for the corpus, so files and processes persist between commands as in a run.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from autodev.blocks.sandbox.docker import DockerSandbox
from autodev.core.commands import CommandRequest, CommandResult
from autodev.core.errors import EnvironmentProblem
from autodev.core.output import OutputCapture

pytestmark = pytest.mark.docker
IMAGE = os.environ.get("AUTODEV_IMAGE", "autodev-sandbox:latest")


def run(session, command: str, timeout_s: float = 30, stall_timeout_s: float = 30, log_path: Path | None = None, step_id: str | None = None):
    """`step_id`: an attempt of that step, which keeps its exit status file (none: no files)."""
    capture = OutputCapture(64 * 1024, log_path)
    request = CommandRequest(command=command, timeout_s=timeout_s, stall_timeout_s=stall_timeout_s, step_id=step_id)
    result = session.run(request, capture.feed)
    capture.close()
    return result.model_copy(update={"output_bytes": capture.total_bytes, "output_tail": capture.tail})


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sandbox-ws")


@pytest.fixture(scope="module")
def session(docker_engine, workspace):
    with DockerSandbox(image=IMAGE).open(workspace, f"test-{uuid.uuid4().hex[:8]}") as s:
        yield s


@pytest.mark.parametrize(
    ("command", "code", "status"),
    [
        ("true", 0, "succeeded"),
        ("exit 1", 1, "failed"),
        ("ls /definitely/not/here", 2, "failed"),
        ("no-such-command-anywhere", 127, "failed"),
        ("kill -9 $$", 137, "failed"),
    ],
)
@pytest.mark.parametrize("exit_file", [False, True], ids=["engine", "exit-file"])
def test_exit_codes_come_from_the_exit_file_or_the_engine(session, workspace, monkeypatch, command, code, status, exit_file):
    """With an exit status file (every plan step has one) the code is read from it, with no
    request to the engine after the output ended; without one the engine's record gives it."""
    asked = []
    inspect = session.api.exec_inspect
    monkeypatch.setattr(session.api, "exec_inspect", lambda exec_id: asked.append(exec_id) or inspect(exec_id))
    result = run(session, command, step_id=uuid.uuid4().hex if exit_file else None)
    assert (result.exit_code, result.status) == (code, status)
    if code != 137:  # (a kill's evidence probe runs a command of its own)
        assert bool(asked) is not exit_file


def test_output_only_on_stderr_is_captured(session):
    result = run(session, "echo 'only on stderr' >&2; exit 4")
    assert result.output_tail == "only on stderr\n" and result.exit_code == 4


def test_stdout_and_stderr_keep_the_order_of_writing(session):
    for _ in range(5):
        assert run(session, "echo one; echo two >&2; echo three; echo four >&2").output_tail == "one\ntwo\nthree\nfour\n"


def test_output_without_trailing_newline(session):
    assert run(session, "printf 'no newline'").output_tail == "no newline"


def test_invalid_utf8_is_replaced(session):
    result = run(session, r"printf 'bad \377\376 bytes'")
    assert result.status == "succeeded" and result.output_tail == "bad \ufffd\ufffd bytes"


def test_twenty_megabytes_of_output(session, tmp_path):
    log = tmp_path / "flood.log"
    result = run(session, "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 20000000; echo; echo END", log_path=log)
    assert result.status == "succeeded"
    assert result.output_bytes == 20_000_005
    assert len(result.output_tail.encode()) <= 64 * 1024 and result.output_tail.endswith("END\n")
    assert log.stat().st_size == 20_000_005


def test_a_command_reading_stdin_gets_end_of_file(session):
    started = time.monotonic()
    result = run(session, "cat; read line; echo read-exit=$?", stall_timeout_s=10)
    assert result.status == "succeeded" and "read-exit=1" in result.output_tail
    assert time.monotonic() - started < 5


def test_a_background_process_holding_stdout_does_not_hold_the_step(session):
    started = time.monotonic()
    result = run(session, "sleep 60 & echo started-background")
    assert result.status == "succeeded" and result.output_tail == "started-background\n"
    assert time.monotonic() - started < 5


def test_output_that_comes_after_the_main_process_exited_is_not_lost(session):
    """What a command's processes print after its main process exited still arrives (on a loaded
    machine its own last lines can come that late); only a quiet stream is cut off."""
    started = time.monotonic()
    result = run(session, "(sleep 1; echo late; sleep 60) & echo early")
    assert result.status == "succeeded" and result.output_tail == "early\nlate\n"
    assert time.monotonic() - started < 8


def test_files_persist_between_commands(session, workspace):
    assert run(session, "echo from-step-one > handoff.txt && pip --version > /tmp/not-in-workspace").exit_code == 0
    assert run(session, "cat handoff.txt /tmp/not-in-workspace").output_tail.startswith("from-step-one\npip ")
    assert (workspace / "handoff.txt").read_text() == "from-step-one\n"


def test_timeout_kills_the_step_and_its_children_not_the_container(session):
    started = time.monotonic()
    result = run(session, "sleep 300 & sleep 301; echo unreachable", timeout_s=1.5)
    assert result.status == "timed_out" and result.exit_code == 137
    assert "1.5s timeout" in result.exit_reason
    assert time.monotonic() - started < 6
    assert "unreachable" not in result.output_tail
    leftovers = run(session, "ps -eo args | grep -c '^sleep 30[01]' || true").output_tail.strip()
    assert leftovers == "0"
    assert run(session, "echo still-alive").output_tail == "still-alive\n"


def test_stall_clock_is_reset_by_output(session):
    steady = run(session, "for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.5; done", stall_timeout_s=1.2)
    assert steady.status == "succeeded" and steady.output_tail.count("tick") == 6
    quiet = run(session, "echo before; sleep 30", stall_timeout_s=1.2)
    assert quiet.status == "stalled" and quiet.exit_code == 137 and quiet.output_tail == "before\n"


def test_sandbox_defaults_are_locked_down(session):
    info = session.container.attrs["HostConfig"]
    assert info["NetworkMode"] == "none" and info["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in info["SecurityOpt"][0]
    assert info["PidsLimit"] > 0 and info["Memory"] > 0
    assert run(session, "id -u").output_tail.strip() != "0"
    proc_status = run(session, "cat /proc/self/status").output_tail.splitlines()
    fields = dict(line.split(":\t", 1) for line in proc_status if ":\t" in line)
    assert fields["CapEff"] == "0000000000000000" and fields["NoNewPrivs"] == "1"
    assert run(session, "ls /sys/class/net").output_tail.split() == ["lo"]


def test_network_true_gives_the_default_bridge_or_fails_at_once_with_the_fix(docker_engine, tmp_path):
    if docker_engine.networks.list(names=["bridge"]):
        with DockerSandbox(image=IMAGE, network=True).open(tmp_path, "net-test") as s:
            assert "lo" in run(s, "ls /sys/class/net").output_tail.split() and s.container.attrs["HostConfig"]["NetworkMode"] == "bridge"
        return
    # An engine started with --bridge=none: a container on its "default" network would see only lo.
    with pytest.raises(EnvironmentProblem, match="no default bridge network") as caught:
        DockerSandbox(image=IMAGE, network=True).open(tmp_path, "net-test")
    assert "network: host" in caught.value.fix
    assert not docker_engine.containers.list(all=True, filters={"label": "autodev.run_id=net-test"})


def test_network_host_and_a_named_network(docker_engine, tmp_path):
    with DockerSandbox(image=IMAGE, network="host").open(tmp_path, "net-host") as s:
        assert len(run(s, "ls /sys/class/net").output_tail.split()) > 1  # the host's interfaces
    with pytest.raises(EnvironmentProblem, match="'no-such-net' does not exist"):
        DockerSandbox(image=IMAGE, network="no-such-net").open(tmp_path, "net-missing")
    network = docker_engine.networks.create(f"autodev-test-{uuid.uuid4().hex[:6]}", driver="bridge", internal=True)
    try:
        with DockerSandbox(image=IMAGE, network=network.name).open(tmp_path, "net-named") as s:
            assert s.container.attrs["HostConfig"]["NetworkMode"] == network.name
            assert len(run(s, "ls /sys/class/net").output_tail.split()) == 2  # lo and the network's
    finally:
        network.remove()


def test_the_container_is_removed_when_the_session_closes(docker_engine, tmp_path):
    session = DockerSandbox(image=IMAGE).open(tmp_path, "close-test")
    name = session.container.name
    assert run(session, "true").exit_code == 0
    session.close()
    assert not docker_engine.containers.list(all=True, filters={"name": name})


class SocketProxy:
    """A unix-socket proxy to the Docker engine that can be cut, as when the engine goes away."""

    def __init__(self, path: Path, target: str = "/var/run/docker.sock"):
        self.path, self.target = path, target
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen()
        self.conns: list[socket.socket] = []
        self.is_cut = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.is_cut:  # an accept() already blocked when the cut came
                client.close()
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass

    def cut(self):
        self.is_cut = True
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.server.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


def test_engine_lost_mid_command_gives_unknown_exit_code_with_reason(docker_engine, tmp_path, monkeypatch):
    proxy = SocketProxy(tmp_path / "docker.sock")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'docker.sock'}")
    session = DockerSandbox(image=IMAGE).open(tmp_path, "engine-lost")
    container_id = session.container.id
    try:
        threading.Timer(1.0, proxy.cut).start()
        result: CommandResult = run(session, "echo working; sleep 30", stall_timeout_s=60)
        assert result.exit_code is None
        assert result.exit_reason.startswith("docker engine lost")
        assert result.status == "failed"
        session.close()  # must not raise although the engine is unreachable
    finally:
        docker_engine.containers.get(container_id).remove(force=True)


def test_a_kill_is_called_out_of_memory_only_when_the_cgroup_counted_one(docker_engine, tmp_path):
    session = DockerSandbox(image=IMAGE, memory="64m").open(tmp_path, "oom-evidence")
    try:
        killed = run(session, "kill -9 $$")
        assert killed.exit_code == 137 and "killed by SIGKILL from inside the sandbox" in killed.exit_reason
        assert "out of memory" not in killed.exit_reason and not killed.sandbox_lost
        oom = run(session, "python3 -c 'x = bytearray(300 * 1024 * 1024)'")
        assert oom.exit_code == 137 and oom.exit_reason.startswith("out of memory") and "64m" in oom.exit_reason
        again = run(session, "kill -9 $$")  # an earlier OOM kill does not make the next kill one
        assert "from inside the sandbox" in again.exit_reason
    finally:
        session.close()


def test_the_exit_status_is_written_to_the_workspace_for_a_later_orchestrator(docker_engine, tmp_path):
    session = DockerSandbox(image=IMAGE).open(tmp_path, "exit-file")
    exit_file = tmp_path / ".autodev" / "logs" / "exit-file" / "s.2.exit"
    try:
        request = CommandRequest(command="exit 7", timeout_s=30, stall_timeout_s=30, step_id="s", attempt=2)
        assert session.run(request, lambda _: None).exit_code == 7
        assert exit_file.read_text().strip() == "7"
    finally:
        session.close()


def test_a_resumed_run_kills_what_its_dead_orchestrator_left_running_each_command_whole(docker_engine, tmp_path):
    """What a resume finds still running is killed with everything it started at once: the
    step's wrapper cannot outlive its command and record it as ended (exit 137), and a command
    that would write after its `sleep` never gets to (a step run twice, on resume)."""
    from autodev.blocks.sandbox.layout import exit_path
    from autodev.blocks.sandbox.leftovers import clear_leftovers

    run_id = f"left-{uuid.uuid4().hex[:8]}"
    session = DockerSandbox(image=IMAGE).open(tmp_path, run_id)
    commands = {"build": "sleep 30; echo build >> after.txt", "serve": "setsid sleep 30 & sleep 30; echo serve >> after.txt"}
    threads = []
    for step_id, command in commands.items():
        request = CommandRequest(command=command, timeout_s=60, stall_timeout_s=60, step_id=step_id, attempt=1)
        threads.append(threading.Thread(target=session.run, args=(request, lambda _: None), daemon=True))
        threads[-1].start()
    deadline = time.monotonic() + 30
    while sum("sleep 30" in " ".join(p) for p in session.container.top()["Processes"]) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        left = clear_leftovers(run_id, tmp_path, queued=[], recorded=set(), tail_bytes=1000)
    finally:
        for thread in threads:
            thread.join(30)
        session.close()
    assert [(a.step_id, a.attempt, a.still_running, a.exit_code) for a in left] == [("build", 1, True, None), ("serve", 1, True, None)]
    assert not (tmp_path / "after.txt").exists()
    assert not list(exit_path(tmp_path, run_id, "build", 1).parent.glob("*.exit"))
    assert not docker_engine.containers.list(all=True, filters={"label": f"autodev.run_id={run_id}"})
