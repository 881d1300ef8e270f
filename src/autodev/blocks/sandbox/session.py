"""A running Docker sandbox: each command a `docker exec` into the run's container.

Each command is exec'd as `/bin/sh -c` with stdin on /dev/null and stderr joined to stdout (the
order of writing is kept); its exit code is the exec's, as Docker reports it, and the wrapper
also writes it to the attempt's exit status file in the workspace (`layout.py`), so a command
that ends after its orchestrator died still tells how it ended (`leftovers.py` reads it). A 137
is explained from the evidence: the container's cgroup OOM counter, or the container itself
stopping (the engine went away). A watcher thread on this side keeps the two clocks (hard
timeout, stall) and, when one runs out, kills every process of the command inside the
container (found by the attempt's mark in their environment), so the container and the next
step live on. The same watcher ends the step when the command's main process has exited but a
background process it left still holds the output stream open (Docker would wait for it).
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors
import requests.exceptions

from autodev.blocks.sandbox import OutputSink, SandboxSession
from autodev.blocks.sandbox.egress import EgressGate
from autodev.blocks.sandbox.layout import MARKER_VAR, attempt_key, exit_path, keep_home, log_path, read_exit_status
from autodev.core.commands import CommandRequest, CommandResult
from autodev.core.models import utcnow

CONTAINER_WORKSPACE = "/workspace"
ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)
# $1 is the step's command, $2 the file for its exit status (may be empty); the wrapper exits
# with the command's status, so Docker's exit code is the command's.
STEP_WRAPPER = 'exec </dev/null 2>&1; /bin/sh -c "$1"; s=$?; [ -z "$2" ] || echo "$s" > "$2"; exit "$s"'
# Kill every process whose environment carries the marker ($1, a fixed string), each with its
# process group (a `docker exec` is one: the wrapper and what it started die at once, so the
# wrapper cannot record a command as ended by a kill meant for both), and print the marker line
# of each one killed, so a caller knows what still ran with no moment between looking and
# killing in which a command could end unseen. Repeated while new ones appear. (`kill -SIG -N`
# rather than `kill -SIG -- -N`: dash has no `--`.)
KILL_MARKED = """
mark=$1
for round in 1 2 3 4 5; do
  found=
  for p in /proc/[0-9]*; do
    key=$(tr '\\0' '\\n' 2>/dev/null < "$p/environ" | grep -m1 -F "$mark") || continue
    read -r stat 2>/dev/null < "$p/stat" || continue
    set -- ${stat##*") "}
    if { [ "$3" -gt 1 ] && kill -KILL "-$3"; } 2>/dev/null || kill -KILL "${p#/proc/}" 2>/dev/null; then
      found=1
      echo "$key"
    fi
  done
  [ -z "$found" ] && exit 0
done
"""
# How many processes the kernel's OOM killer ended in this container (cgroup v2, then v1).
OOM_KILLS = "cat /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control 2>/dev/null | grep oom_kill"
REPEATING = "it printed only lines that repeat"
# After the main process exited, its output is still read while it comes; the stream is cut off
# (a process it left holds it open) once it has been quiet this long, at most DRAIN_MAX_S on.
# Generous: on a loaded machine the last output can reach this side well after the exit.
DRAIN_QUIET_S = 2.0
DRAIN_MAX_S = 10.0


class DockerSandboxSession(SandboxSession):
    def __init__(self, client: docker.DockerClient, container, workspace: Path, run_id: str, memory: str, egress: EgressGate | None = None):
        self.client = client
        self.egress = egress  # the allow-list's proxy and relay: the only way out
        self.api = client.api
        self.container = container
        self.workspace = workspace
        self.run_id = run_id
        self.memory = memory
        self._closed = False
        self._oom_kills = 0  # OOM kills in this (fresh) container that earlier commands account for

    def log_path(self, step_id: str, attempt: int) -> Path:
        return log_path(self.workspace, self.run_id, step_id, attempt)

    def run(self, request: CommandRequest, on_output: OutputSink, on_started: Callable[[], None] | None = None) -> CommandResult:
        started_at = utcnow()
        if self.egress is not None:
            self.egress.revive()  # one that died between commands: this one has its way out
        clock = _Clocks(request.timeout_s, request.stall_timeout_s)
        reason, lost = None, False
        try:
            exit_code = self._exec(request, clock, on_output, on_started)
        except ENGINE_ERRORS as exc:
            exit_code, reason, lost = None, f"docker engine lost: {exc.__class__.__name__}: {exc}", True
        finally:
            clock.stop()
        if self.egress is not None and (gone := self.egress.revive()) and exit_code != 0:
            reason = reason or gone  # it failed closed: nothing got out meanwhile
        if clock.killed_for:
            status, reason = clock.killed_for, reason or clock.reason
        else:
            if exit_code in (137, 143):  # SIGKILL, SIGTERM: the OOM killer, the engine stopping, or a signal
                exit_code, reason, lost = self._who_killed(exit_code)
            status = "succeeded" if exit_code == 0 else "failed"
        refused = [r.target for r in self.egress.refused(request.step_id, request.attempt)] if self.egress else []
        return CommandResult(
            status=status, exit_code=exit_code, exit_reason=reason, started_at=started_at, finished_at=utcnow(),
            sandbox_lost=lost, refused=list(dict.fromkeys(refused)),
        )  # fmt: skip

    def _exec(self, request: CommandRequest, clock: _Clocks, on_output: OutputSink, on_started: Callable[[], None] | None) -> int | None:
        """Run the command to the end of its output under the watcher; its exit code."""
        key, exit_file = f"{uuid.uuid4().hex}/", None  # an attempt of no step keeps no files
        if request.step_id is not None:
            key = attempt_key(self.run_id, request.step_id, request.attempt)
            exit_file = exit_path(self.workspace, self.run_id, request.step_id, request.attempt)
            exit_file.unlink(missing_ok=True)  # only this attempt's end may be read from it
        exec_id = self.api.exec_create(
            self.container.id,
            ["/bin/sh", "-c", STEP_WRAPPER, "autodev-step", keep_home(request.kept_home, CONTAINER_WORKSPACE) + request.command,
             self._in_container(exit_file)],
            stdout=True, stderr=True, stdin=False, tty=False, environment={**self._egress_env(request), **request.env, MARKER_VAR: key},
            workdir=CONTAINER_WORKSPACE,
        )["Id"]  # fmt: skip
        stream = self.api.exec_start(exec_id, stream=True, demux=True)
        threading.Thread(target=self._watch, args=(clock, exec_id, f"{MARKER_VAR}={key}", stream), daemon=True).start()
        if on_started:
            on_started()
        for out, err in stream:
            for chunk in (out, err):
                if chunk:  # the sink says whether the chunk shows progress (a repeated line does not)
                    clock.output_seen(progress=on_output(chunk) is not False)
        return self._exit_code(exec_id, exit_file)

    def _egress_env(self, request: CommandRequest) -> dict[str, str]:
        return self.egress.env(request.step_id, request.attempt) if self.egress else {}

    def _in_container(self, host_path: Path | None) -> str:
        """A host path inside the workspace, as the container sees it ('' for none)."""
        if host_path is None:
            return ""
        return f"{CONTAINER_WORKSPACE}/{host_path.resolve().relative_to(self.workspace).as_posix()}"

    def _who_killed(self, exit_code: int) -> tuple[int | None, str, bool]:
        """A command ended by SIGKILL or SIGTERM: the exit code, the reason the evidence gives, and
        whether the sandbox itself is gone. The probe is a command run in the container: when it
        cannot run, the container stopped under the command (the engine stopped or restarted it);
        when it runs, it reads the cgroup's OOM kill count: out of memory only if that grew."""
        name = {137: "SIGKILL", 143: "SIGTERM"}[exit_code]
        kills = self._read_oom_kills()
        if kills is None:
            return None, (
                f"the sandbox container stopped while the command ran ({name}): the Docker engine stopped or "
                "restarted, or the container was removed"
            ), True
        if kills > self._oom_kills:
            self._oom_kills = kills
            return exit_code, f"out of memory: the kernel's OOM killer ended it (sandbox memory limit {self.memory})", False
        return exit_code, f"killed by {name} from inside the sandbox (no out-of-memory kill was recorded)", False

    def _read_oom_kills(self) -> int | None:
        """The container's OOM kill count (0 when its cgroup does not say); None when nothing can
        run in the container any more."""
        try:
            result = self.container.exec_run(["/bin/sh", "-c", OOM_KILLS])
        except ENGINE_ERRORS:
            return None
        out = result.output.decode(errors="replace")
        counts = [int(part) for line in out.splitlines() if (part := line.split()[-1]).isdigit()]
        return max(counts, default=0)

    def _exit_code(self, exec_id: str, exit_file: Path | None) -> int | None:
        """The wrapper's exit status file holds it once the output ended (the wrapper wrote it
        before exiting), without a request to the engine; else (a kill ended the wrapper too, a
        file system that shows the file late) the engine's record of the exec. The stream can
        end a moment before Docker records the exit; poll briefly."""
        if exit_file is not None and (recorded := read_exit_status(exit_file)) is not None:
            return recorded
        for _ in range(1000):
            info = self.api.exec_inspect(exec_id)
            if not info["Running"] and info["ExitCode"] is not None:
                return int(info["ExitCode"])
            time.sleep(0.002)
        raise docker.errors.DockerException("exec still running after its output ended")

    def _watch(self, clock: _Clocks, exec_id: str, marker: str, stream) -> None:
        """Until the command's output ends: enforce the clocks, and notice an exited main process."""
        poll_in = 0.2
        next_poll = time.monotonic() + poll_in
        while True:
            wake = next_poll if clock.killed_for else min(next_poll, clock.next_expiry())
            if clock.wait(wake):
                return  # the output ended: the reading side takes over
            if not clock.killed_for and clock.violated():
                self._kill_marked(marker)
                continue  # keep watching: the stream ends once the processes are gone
            if time.monotonic() < next_poll:
                continue
            try:
                running = self.api.exec_inspect(exec_id)["Running"]
            except ENGINE_ERRORS:
                return  # the reading side meets the same error and reports it
            if not running:  # the main process is gone; something it started may hold the output open
                self._drain(clock, stream)
                return
            poll_in = min(poll_in * 1.5, 2.0)
            next_poll = time.monotonic() + poll_in

    @staticmethod
    def _drain(clock: _Clocks, stream) -> None:
        """Let the exited command's output come in while it does; then cut the stream off."""
        exited = time.monotonic()
        while not clock.wait(min(max(exited, clock.last_chunk) + DRAIN_QUIET_S, exited + DRAIN_MAX_S)):
            now = time.monotonic()
            if now >= exited + DRAIN_MAX_S or now >= max(exited, clock.last_chunk) + DRAIN_QUIET_S:
                stream.close()
                return

    def _kill_marked(self, marker: str) -> None:
        with contextlib.suppress(*ENGINE_ERRORS):
            self.container.exec_run(["/bin/sh", "-c", KILL_MARKED, "autodev-kill", marker])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.egress is not None:
            self.egress.close()
        try:
            self.container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except ENGINE_ERRORS:
            pass  # engine gone: nothing left to remove from here
        finally:
            self.client.close()


class _Clocks:
    """The two clocks of a running command: a hard deadline and a stall timeout reset by new output."""

    def __init__(self, timeout_s: float, stall_timeout_s: float):
        now = time.monotonic()
        self.timeout_s = timeout_s
        self.deadline = now + timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.last_output = now  # the last output that showed progress (the stall clock's)
        self.last_chunk = now  # the last output of any kind
        self.repeated = False  # output came since the last progress, all of it repeats
        self.killed_for: str | None = None
        self.reason: str | None = None
        self._done = threading.Event()

    def output_seen(self, progress: bool = True) -> None:
        self.last_chunk = time.monotonic()
        if progress:
            self.last_output, self.repeated = time.monotonic(), False
        else:
            self.repeated = True

    def stop(self) -> None:
        self._done.set()

    def violated(self) -> bool:
        """True (and the reason recorded) once the deadline or the stall timeout has passed."""
        now = time.monotonic()
        if now >= self.deadline:
            self.killed_for, self.reason = "timed_out", f"killed after the {self.timeout_s:g}s timeout"
        elif now >= self.last_output + self.stall_timeout_s:
            self.killed_for = "stalled"
            self.reason = f"killed after {self.stall_timeout_s:g}s without new output"
            if self.repeated:
                self.reason += f" ({REPEATING})"
        return self.killed_for is not None

    def next_expiry(self) -> float:
        return min(self.deadline, self.last_output + self.stall_timeout_s)

    def wait(self, moment: float) -> bool:
        """Sleep until `moment` (monotonic); True as soon as the command has ended."""
        return self._done.wait(max(moment - time.monotonic(), 0))
