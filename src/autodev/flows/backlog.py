"""A run on a repository: the backlog it inherits, and the branch it works on.

The backlog comes from the newest earlier run on the same document and repository
(`core/backlog.py` says what is left of it); the run's branch starts where that run's work is,
in a clone of its own.
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger

from autodev.blocks.git_branch import branch_state
from autodev.blocks.git_branch import open_branch as open_clone
from autodev.core.backlog import backlog_after, carried
from autodev.core.models import RepositoryReport
from autodev.core.repository import Backlog, RepoMap
from autodev.core.session import SessionRecord
from autodev.flows.runtime import runtime


def backlog_for(repository: Path, requirements: str) -> Backlog:
    """What the newest earlier run on `requirements` (a document's path) and `repository` left."""
    store = runtime().store()
    try:
        previous = next((s for s in store.sessions.recent() if _same_work(s, repository, requirements)), None)
        if previous is None or previous.metadata.repository is None:
            return Backlog()
        report = store.report(previous)
    finally:
        store.close()
    state = branch_state(repository, previous.metadata.repository.branch)
    return backlog_after(previous, report.tasks, state.exists, state.merged)


def _same_work(session: SessionRecord, repository: Path, requirements: str) -> bool:
    repo = session.metadata.repository
    return (
        repo is not None and repo.repository == str(repository.resolve())
        and session.metadata.origin.requirements == str(Path(requirements).resolve())
    )  # fmt: skip


def open_branch(repository: Path, project: str, repo_map: RepoMap) -> RepositoryReport:
    """The run's branch, in a clone of its own under AUTODEV_WORKSPACE_ROOT (git works in the
    sandbox), from where the backlog's work is; the checkout's uncommitted changes are not on it."""
    logger = get_run_logger()
    worktree = runtime().settings.new_workspace(project)
    branch, backlog = f"autodev/{worktree.name}", repo_map.backlog
    base = open_clone(repository, branch, worktree, start=backlog.start)
    if repo_map.left_out:
        logger.warning("left out of branch %s (uncommitted in your checkout): %s", branch, ", ".join(repo_map.left_out[:20]))
    if backlog.previous_run:
        logger.info("going on from run %s (from %s): %d task(s) done there, left alone: %s", backlog.previous_run,
                    backlog.start or "your HEAD, which has its branch", len(backlog.done), "; ".join(backlog.done) or "none")  # fmt: skip
    logger.info("working on branch %s (from %s) in %s; your checkout is not touched", branch, base[:8], worktree)
    report = RepositoryReport(repository=str(repository.resolve()), branch=branch, worktree=str(worktree), base=base, left_out=repo_map.left_out)
    return carried(report, backlog)
