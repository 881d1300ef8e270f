"""What a run's orchestrator left behind when it died: its sandbox containers, the commands
still running in them, and the exit status files of commands that ended after it.

Every command of a run carries `AUTODEV_STEP=<run>/<step>/<attempt>/` in its environment, and
the step wrapper writes its exit status to `.autodev/logs/<run>/<step>.<attempt>.exit` in the
workspace when it ends (`layout.py`). So a resumed run can tell, for each attempt
its previous orchestrator had started: it finished (with this exit code), it is still running
(it is killed now, and runs again), or it never finished.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path

from autodev.blocks.sandbox.docker import docker_client
from autodev.blocks.sandbox.layout import MARKER_VAR, exit_path, log_path, read_exit_status, status_dir
from autodev.blocks.sandbox.session import ENGINE_ERRORS, KILL_MARKED
from autodev.core.session import LeftAttempt, QueueEntry

HEAD_BYTES = 65536  # of a left attempt's log: where an agent CLI names its session


def remove_run_containers(run_id: str, label: str = "autodev.run_id") -> int:
    """Remove the sandbox containers a run left behind (its process died or was cancelled);
    how many there were. `label` may be autodev.flow_run_id to find them by flow run."""
    client = docker_client(timeout=10)
    try:
        containers = client.containers.list(all=True, filters={"label": f"{label}={run_id}"})
        for container in containers:
            container.remove(force=True)
        return len(containers)
    finally:
        client.close()


def clear_leftovers(
    run_id: str, workspace: Path, queued: list[QueueEntry], recorded: set[tuple[str, int]], tail_bytes: int,
    elsewhere: dict[str, Path] | None = None,
) -> list[LeftAttempt]:  # fmt: skip
    """Kill what the run's dead orchestrator left running, remove its sandboxes, and say of each
    attempt it had started and not `recorded` (queued in the metadata, still running, or with
    an exit status file) how it ended. `elsewhere`: the steps that run in another workspace (a
    task's clone), with it. EnvironmentProblem when no engine answers: what still runs there
    cannot be told, so nothing is settled."""
    still_running = _kill_and_remove(run_id)
    found = {(q.step_id, q.attempt) for q in queued} | still_running
    where = elsewhere or {}
    for folder in {status_dir(w, run_id) for w in {workspace, *where.values()}}:
        for path in folder.glob("*.exit") if folder.is_dir() else []:
            step_id, _, attempt = path.name.removesuffix(".exit").rpartition(".")
            if attempt.isdigit():
                found.add((step_id, int(attempt)))
    found -= recorded  # their results are stored: nothing to read again
    dispatched = {(q.step_id, q.attempt): q.dispatched_at for q in queued}
    return [
        _left(where.get(step_id, workspace), run_id, step_id, attempt, (step_id, attempt) in still_running, tail_bytes)
        .model_copy(update={"started_at": dispatched.get((step_id, attempt))})
        for step_id, attempt in sorted(found)
    ]


def _kill_and_remove(run_id: str) -> set[tuple[str, int]]:
    """(step, attempt) of every command of the run still running in its old sandboxes; each is
    killed, and the containers removed."""
    client = docker_client(timeout=10)
    running: set[tuple[str, int]] = set()
    try:
        for container in client.containers.list(all=True, filters={"label": f"autodev.run_id={run_id}"}):
            try:
                if container.status == "running":
                    mark = f"{MARKER_VAR}={run_id}/"
                    killed = container.exec_run(["/bin/sh", "-c", KILL_MARKED, "autodev-kill", mark], stderr=False)
                    for line in killed.output.decode(errors="replace").split():
                        step_id, _, attempt = line.removeprefix(mark).rstrip("/").rpartition("/")
                        if line.startswith(mark) and step_id and attempt.isdigit():
                            running.add((step_id, int(attempt)))
                container.remove(force=True)
            except ENGINE_ERRORS:  # it stopped or went away meanwhile: nothing of it runs
                with contextlib.suppress(*ENGINE_ERRORS):
                    container.remove(force=True)
    finally:
        client.close()
    return running


def _left(workspace: Path, run_id: str, step_id: str, attempt: int, was_running: bool, tail_bytes: int) -> LeftAttempt:
    status = exit_path(workspace, run_id, step_id, attempt)
    log = log_path(workspace, run_id, step_id, attempt)
    finished_at = None
    if (exit_code := read_exit_status(status)) is not None:
        finished_at = datetime.fromtimestamp(status.stat().st_mtime, UTC)
    head = tail = ""
    if log.is_file():
        with log.open("rb") as f:
            head = f.read(HEAD_BYTES).decode("utf-8", errors="replace")
            f.seek(max(log.stat().st_size - tail_bytes, 0))
            tail = f.read().decode("utf-8", errors="replace")
    return LeftAttempt(
        step_id=step_id, attempt=attempt, exit_code=exit_code, finished_at=finished_at, still_running=was_running,
        output_tail=tail, output_head=head, log_path=str(log) if log.is_file() else None,
    )


def remove_containers_of(run_ids: set[str]) -> int:
    """Remove every sandbox container labelled with one of these runs (one listing for all of
    them); how many there were."""
    if not run_ids:
        return 0
    client = docker_client(timeout=10)
    try:
        removed = 0
        for container in client.containers.list(all=True, filters={"label": "autodev.run_id"}):
            if container.labels.get("autodev.run_id") in run_ids:
                with contextlib.suppress(*ENGINE_ERRORS):  # gone already: nothing to remove
                    container.remove(force=True)
                    removed += 1
        return removed
    finally:
        client.close()
