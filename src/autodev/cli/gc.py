"""`autodev gc`: remove what old runs left, so a store used every night does not grow forever.

A finished run (succeeded or failed) not written for DAYS loses its record in the state store
(session, attempts, step states, model usage), its log and exit-status files under the
workspace's `.autodev/logs/<run>/`, and any sandbox container still labelled with it. In the
workspaces those runs used, the files an agent CLI kept under `.autodev/home/` (its sessions,
which a later round of the same run resumes) go too once they are DAYS old, unless a run there
can still be resumed. Blocked and running runs are kept whatever their age: they can still be
resumed. The workspaces' code is the user's and is never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel
from rich.console import Console

from autodev.core.errors import BadInput
from autodev.core.models import RunStatus, utcnow
from autodev.core.session import SessionRecord
from autodev.flows.runtime import runtime

err = Console(stderr=True)
FINISHED: tuple[RunStatus, ...] = ("succeeded", "failed")
RESUMABLE: tuple[RunStatus, ...] = ("blocked", "running")


class GcReport(BaseModel):
    """What `autodev gc` removed (or, with --dry-run, would remove)."""

    older_than_days: float
    dry_run: bool
    runs: int = 0
    attempts: int = 0
    log_files: int = 0
    log_bytes: int = 0
    containers: int = 0
    session_files: int = 0  # an agent CLI's files under `.autodev/home/` of the runs' workspaces
    session_bytes: int = 0
    database_bytes_before: int | None = None  # SQLite only: the file's size
    database_bytes_after: int | None = None
    kept_resumable: int = 0  # blocked or running runs this old, kept because they can be resumed


def gc(
    older_than: Annotated[float, typer.Option("--older-than", help="Remove finished runs not written for this many days.", metavar="DAYS")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (what was removed).")] = False,
) -> None:
    """Remove old finished runs: their state store records, log files, leftover sandbox containers and agent CLI sessions."""
    if older_than < 0:
        raise BadInput(f"--older-than {older_than:g}: days must be 0 or more")
    report = GcReport(older_than_days=older_than, dry_run=dry_run)
    cutoff = utcnow() - timedelta(days=older_than)
    from autodev.blocks.sandbox.layout import KEPT_HOME  # the sandbox's package imports the docker SDK
    from autodev.blocks.store.sqlite import SQLiteDatabase  # the store's package imports Prefect: only when collecting

    store = runtime().store()
    db_file = store.db.path if isinstance(store.db, SQLiteDatabase) else None  # PostgreSQL's size is the server's
    report.database_bytes_before = _size(db_file)
    try:
        old = store.sessions.with_status(FINISHED, quiet_since=cutoff)
        report.kept_resumable = len(store.sessions.with_status(RESUMABLE, quiet_since=cutoff))
        for session in old:
            collect_run(store, session, report, dry_run)
        resumable = {place for s in store.sessions.with_status(RESUMABLE) for place in places_of(s)}
        homes = {place / KEPT_HOME for s in old for place in places_of(s) if place not in resumable}
        collect_agent_sessions(homes, cutoff, report, dry_run)
        if old and not dry_run:
            report.containers = _remove_containers({s.run_id for s in old})
            store.db.compact()
    finally:
        store.close()
    report.database_bytes_after = _size(db_file)
    _show(report, as_json)


def collect_run(store, session: SessionRecord, report: GcReport, dry_run: bool) -> None:
    """Count (and unless dry_run, remove) one run's log files (its tasks' clones' too) and store records."""
    from autodev.blocks.sandbox.layout import status_dir  # the docker SDK, only when there is a run to collect

    folders = [status_dir(place, session.run_id) for place in places_of(session)]
    files = [f for logs in folders if logs.is_dir() for f in logs.rglob("*") if f.is_file()]
    report.runs += 1
    report.log_files += len(files)
    report.log_bytes += sum(f.stat().st_size for f in files)
    if dry_run:
        report.attempts += len(store.attempts.of(session.run_id))
        return
    for logs in folders:
        shutil.rmtree(logs, ignore_errors=True)
    report.attempts += store.sessions.delete(session.run_id)


def places_of(session: SessionRecord) -> set[Path]:
    """Where a run worked: its workspace and its tasks' clones."""
    from autodev.blocks.git_merge import lane_clone

    workspace = Path(session.workspace).resolve()
    return {workspace} | {lane_clone(workspace, s.worktree) for s in session.plan.steps if s.worktree}


def collect_agent_sessions(homes: Iterable[Path], cutoff: datetime, report: GcReport, dry_run: bool) -> None:
    """Count (and unless dry_run, remove) the files under these kept homes not modified since
    `cutoff`, and then the folders left empty. Links are not followed: a home that is one (a
    command in the sandbox can make it point anywhere) is left alone, and so is a link in one."""
    for home in homes:
        if home.resolve() != home:
            continue
        for file in (Path(top, name) for top, _, names in os.walk(home) for name in names):
            with contextlib.suppress(OSError):  # gone meanwhile, or not this user's to remove: counted once removed
                info = file.lstat()
                if stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff.timestamp():
                    if not dry_run:
                        file.unlink()
                    report.session_files += 1
                    report.session_bytes += info.st_size
        if not dry_run:
            for top, _, _ in os.walk(home, topdown=False):  # the deepest first
                if Path(top) != home:
                    with contextlib.suppress(OSError):  # a folder still holding something stays
                        Path(top).rmdir()


def _remove_containers(run_ids: set[str]) -> int:
    from autodev.blocks.sandbox.leftovers import remove_containers_of

    return remove_containers_of(run_ids)


def _size(path: Path | None) -> int | None:
    return path.stat().st_size if path is not None and path.exists() else None


def _show(report: GcReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.model_dump(mode="json")))
        return
    verb = "would remove" if report.dry_run else "removed"
    err.print(
        f"{verb} {report.runs} finished run(s) older than {report.older_than_days:g} days: {report.attempts} attempt(s), "
        f"{report.log_files} log file(s) ({_size_text(report.log_bytes)}), "
        f"{report.session_files} agent session file(s) ({_size_text(report.session_bytes)})"
        + ("" if report.dry_run else f", {report.containers} leftover container(s)"),
        highlight=False,
        soft_wrap=True,
    )
    if report.database_bytes_before is not None and not report.dry_run:
        err.print(f"state store: {_size_text(report.database_bytes_before)} -> {_size_text(report.database_bytes_after or 0)}", highlight=False, soft_wrap=True)
    if report.kept_resumable:
        err.print(
            f"kept {report.kept_resumable} blocked or running run(s) that old: `autodev resume RUN_ID --action abort` ends one",
            highlight=False,
            soft_wrap=True,
        )


def _size_text(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MiB"
