"""A run's branch of a repository that exists: a clone of its own, with git working inside the sandbox.

The clone (`git clone --shared`) borrows the repository's objects instead of copying them: its
`.git/objects/info/alternates` names the repository's object folder, which the Docker sandbox
mounts read-only at the same path (`blocks/sandbox/docker.py`), so `git status`, `git diff`,
`git log` and `git commit` work inside the sandbox on the run's branch and nowhere else. The
repository itself is only ever read until the run ends; then `publish_branch` fetches the
branch into it (a fetch writes new objects and one new branch, never a checkout, an index or
another branch).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import git

from autodev.blocks.git_state import workspace_repo
from autodev.core.errors import BadInput

AGENT_IDENTITY = {"user.name": "autodev agent", "user.email": "agent@autodev.localhost"}  # commits an agent makes itself


def open_branch(repo_path: Path, branch: str, clone: Path, start: str | None = None) -> str:
    """A new branch `branch` from the checkout's HEAD (or from the branch `start`: an earlier
    run's, whose work this run goes on from), checked out in a clone at `clone` (the checkout,
    its branch and its working tree are not touched); the base commit's sha. BadInput when the
    repository has a branch of that name already."""
    with workspace_repo(repo_path) as repo:  # a user's repository, or (a task's clone) the run's clone the sandbox owns
        if _has_branch(repo, branch):
            raise BadInput(f"branch {branch} exists already in {repo_path}: rename or delete it, or run again a second later")
        base = repo.commit(start if start and start.startswith("refs/") else f"refs/heads/{start}" if start else "HEAD").hexsha
    pack = upload_pack(repo_path)  # our own, hence "unsafe" allowed
    with git.Repo.clone_from(str(repo_path), str(clone), allow_unsafe_options=True, shared=True, no_checkout=True, upload_pack=pack) as made:
        made.git.checkout("-q", "-b", branch, base)
        with made.config_writer() as config:
            for key, value in AGENT_IDENTITY.items():
                section, option = key.split(".")
                config.set_value(section, option, value)
        exclude = Path(made.git_dir) / "info" / "exclude"
        exclude.parent.mkdir(exist_ok=True)
        with exclude.open("a") as out:
            out.write(".autodev/\n")  # autodev's logs and status files: not the agent's work
    return base


def publish_branch(clone: Path, repo_path: Path, branch: str) -> None:
    """Bring the clone's branch into the repository (a fast-forward of autodev's own branch);
    git's refusal is raised as GitCommandError. A run begun before runs had clones works in a
    worktree of the repository (its .git is a file): its branch is there already."""
    if (clone / ".git").is_file():
        return
    with git.Repo(repo_path) as repo:
        fetch(repo, clone, f"refs/heads/{branch}:refs/heads/{branch}")


def fetch(repo: git.Repo, clone: Path, refspec: str) -> None:
    """Fetch `refspec` from the clone into `repo` (GitCommandError when git refuses)."""
    repo.git.fetch("--quiet", "--upload-pack", upload_pack(clone), str(clone.resolve()), refspec)


def upload_pack(clone: Path) -> str:
    """The upload-pack that reads a clone belonging to the sandbox's user, told it is safe (a
    process of its own, which a local fetch or clone gives none of this one's `-c` settings);
    upload-pack runs nothing from the clone's own config or hooks."""
    path = clone.resolve()
    return f"git -c safe.directory={shlex.quote(str(path))} -c safe.directory={shlex.quote(str(path / '.git'))} upload-pack"


@dataclass(frozen=True)
class BranchState:
    exists: bool  # the branch is in the repository
    merged: bool  # the checkout's HEAD has it


def branch_state(repo_path: Path, branch: str) -> BranchState:
    """Whether `branch` is in the repository, and whether the checkout's HEAD has it merged."""
    with git.Repo(repo_path) as repo:
        if not _has_branch(repo, branch):
            return BranchState(exists=False, merged=False)
        return BranchState(exists=True, merged=repo.is_ancestor(repo.commit(f"refs/heads/{branch}"), repo.head.commit))


def _has_branch(repo: git.Repo, branch: str) -> bool:
    return branch in {head.name for head in repo.heads}
