"""`autodev gc`: old finished runs lose their records, log files and leftover containers, and
their workspaces the agent CLI sessions as old; blocked runs and newer runs are kept."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import docker.errors
import pytest

from autodev.cli.gc import GcReport, collect_agent_sessions
from autodev.core.commands import CommandResult, StepAttempt
from autodev.core.models import utcnow
from autodev.core.session import RunWrite
from autodev.core.settings import load_settings
from tests.conftest import IMAGE
from tests.helpers import AUTODEV, containers_of, run, store
from tests.test_store import new_run, open_store

QUICK = "project: kept\nsteps:\n  - {id: a, run: 'echo a'}\n  - {id: b, run: 'echo b', depends_on: [a]}\n"
STUCK = "project: stuck\ndefaults: {stall_timeout_s: 1, max_stall_retries: 0}\nsteps:\n  - {id: wait, run: 'sleep 600'}\n"


@pytest.mark.postgres
def test_deleting_a_run_removes_all_its_records_and_nothing_else(database_url):
    db = open_store(database_url)
    gone, kept = new_run(db), new_run(db)
    for run_id in (gone, kept):
        result = CommandResult(status="succeeded", exit_code=0, started_at=utcnow(), finished_at=utcnow())
        attempt = StepAttempt(run_id=run_id, step_id="a", attempt=1, command="echo a", result=result)
        db.write(RunWrite(run_id=run_id, attempts=[attempt], step_states={"a": "succeeded"}))
    assert db.sessions.delete(gone) == 1
    db.db.compact()
    assert db.sessions.get(gone) is None and db.attempts.of(gone) == [] and db.attempts.states(gone) == {}
    assert db.sessions.get(kept) is not None and len(db.attempts.of(kept)) == 1 and db.attempts.states(kept) == {"a": "succeeded"}
    db.close()


def age(run_id: str, days: float) -> None:
    """Make a run look untouched for `days` (the store's own clock column)."""
    path = load_settings().database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE agent_sessions SET updated_at = ? WHERE run_id = ?", ((utcnow() - timedelta(days=days)).isoformat(), run_id))


def kept_session(workspace: Path, name: str, days: float) -> Path:
    """A file an agent CLI kept in the workspace (`.autodev/home/`), last written `days` ago."""
    path = workspace / ".autodev" / "home" / ".codex" / "sessions" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"type": "session_meta"}\n')
    os.utime(path, (time.time() - days * 86400,) * 2)
    return path


def gc(*args: str) -> dict:
    done = subprocess.run([*AUTODEV, "gc", *args, "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.docker
def test_gc_removes_old_finished_runs_and_keeps_what_can_be_resumed(prefect_api, docker_engine, tmp_path):
    _, old = run(QUICK, tmp_path / "old")
    _, new = run(QUICK, tmp_path / "new")
    _, blocked = run(STUCK, tmp_path / "stuck")
    _, beside = run(QUICK, tmp_path / "stuck")  # finished, in the workspace of a run that can resume
    assert (old.status, new.status, blocked.status, beside.status) == ("succeeded", "succeeded", "blocked", "succeeded")
    for run_id in (old.run_id, blocked.run_id, beside.run_id):
        age(run_id, days=10)
    leftover = docker_engine.containers.create(IMAGE, ["true"], labels={"autodev.run_id": old.run_id})
    sessions = [kept_session(tmp_path / "old", "2026/10/rollout-old.jsonl", 10), kept_session(tmp_path / "old", "rollout-new.jsonl", 1),
                kept_session(tmp_path / "stuck", "rollout-old.jsonl", 10)]  # fmt: skip
    try:
        check_gc(docker_engine, tmp_path, old, new, blocked)
        check_sessions(*sessions)
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            leftover.remove(force=True)


def check_gc(docker_engine, tmp_path: Path, old, new, blocked) -> None:
    logs = tmp_path / "old" / ".autodev" / "logs" / old.run_id
    assert any(logs.iterdir())

    preview = gc("--older-than", "7", "--dry-run")
    assert (preview["runs"], preview["attempts"], preview["kept_resumable"], preview["session_files"]) == (2, 4, 1, 1)
    assert preview["log_files"] > 0 and logs.is_dir() and containers_of(docker_engine, old.run_id)

    done = gc("--older-than", "7")
    assert (done["runs"], done["attempts"], done["containers"], done["kept_resumable"], done["session_files"]) == (2, 4, 1, 1, 1)
    assert done["log_bytes"] == preview["log_bytes"] > 0
    assert not logs.exists() and not containers_of(docker_engine, old.run_id)
    db = store()
    assert db.sessions.get(old.run_id) is None and db.attempts.of(old.run_id) == []
    assert [a.result.status for a in db.attempts.of(new.run_id)] == ["succeeded", "succeeded"]
    assert db.sessions.get(blocked.run_id).status == "blocked"  # it can still be resumed
    db.close()
    assert (tmp_path / "old").is_dir()  # the workspace is the user's: never removed
    assert gc("--older-than", "7")["runs"] == 0  # nothing twice


def check_sessions(old: Path, new: Path, resumable: Path) -> None:
    """Of the old run's workspace, the session file as old as the runs went, with its emptied
    folders; the newer one stays, as does one where a blocked run can still resume."""
    assert not old.exists() and not old.parent.exists() and new.exists() and resumable.exists()


def test_gc_follows_no_link_out_of_a_kept_home(tmp_path):
    """A command in the sandbox can replace `.autodev/home` with a link, or put links in it: gc
    removes only the files that are in the home."""
    outside = tmp_path / "outside" / "precious.txt"
    outside.parent.mkdir()
    outside.write_text("mine")
    os.utime(outside, (time.time() - 40 * 86400,) * 2)
    linked = tmp_path / "linked" / ".autodev" / "home"
    linked.parent.mkdir(parents=True)
    linked.symlink_to(outside.parent)
    real = kept_session(tmp_path / "real", "2026/10/rollout.jsonl", 40)
    (real.parent / "link-out").symlink_to(outside)
    report = GcReport(older_than_days=30, dry_run=False)
    collect_agent_sessions([linked, (tmp_path / "real" / ".autodev" / "home").resolve()], utcnow() - timedelta(days=30), report, False)
    assert outside.read_text() == "mine" and (report.session_files, report.session_bytes) == (1, len('{"type": "session_meta"}\n'))
    assert not real.exists() and (tmp_path / "real" / ".autodev" / "home").is_dir()


def test_gc_refuses_negative_days():
    done = subprocess.run([*AUTODEV, "gc", "--older-than", "-1"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "days must be 0 or more" in done.stderr
