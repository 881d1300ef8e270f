"""A workspace's git state with gitpython: read for insights, and the scaffold's first commit."""

from __future__ import annotations

from pathlib import Path

import git

from autodev.models import GitState


def read_git_state(workspace: Path, start_head: str | None = None) -> GitState:
    try:
        repo = git.Repo(workspace)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return GitState()
    with repo:
        # The sandbox writes the workspace as another user; git would refuse it as "dubious".
        repo.git.set_persistent_git_options(c=f"safe.directory={Path(workspace).resolve()}")
        try:
            head = repo.head.commit.hexsha
        except ValueError:  # no commit yet
            head = None
        branch = None if repo.head.is_detached else repo.active_branch.name
        conflicts = sorted(repo.index.unmerged_blobs())
        dirty = sorted({d.a_path for d in repo.index.diff(None)} | ({d.a_path for d in repo.index.diff("HEAD")} if head else set()))
        commits = 0
        diff_stat = ""
        if head and start_head and start_head != head:
            commits = int(repo.git.rev_list("--count", f"{start_head}..{head}"))
        if head and start_head:
            diff_stat = repo.git.diff("--shortstat", start_head).strip()
        return GitState(
            is_repo=True,
            branch=branch,
            head=head,
            dirty_files=[p for p in dirty if p not in conflicts],
            untracked_files=sorted(repo.untracked_files),
            conflicts=conflicts,
            commits_since_start=commits,
            diff_stat=diff_stat,
        )


AUTODEV_ACTOR = git.Actor("autodev", "autodev@localhost")


def commit_all(workspace: Path, message: str) -> str:
    """Make `workspace` a git repository (when it is not one) and commit every file in it;
    the new commit's sha."""
    try:
        repo = git.Repo(workspace)
    except git.InvalidGitRepositoryError:
        repo = git.Repo.init(workspace, initial_branch="main")
    with repo:
        repo.git.set_persistent_git_options(c=f"safe.directory={Path(workspace).resolve()}")
        repo.git.add(A=True)
        return repo.index.commit(message, author=AUTODEV_ACTOR, committer=AUTODEV_ACTOR).hexsha
