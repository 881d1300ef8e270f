"""A workspace's git state with gitpython: read for insights, the scaffold's first commit, and a
repository that exists: its map, the run's worktree and branch, a commit per agent round."""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import git

from autodev.core.models import GitState
from autodev.core.repository import FILE_LIMIT, BranchChanges, RepoMap, detect

T = TypeVar("T")
# Host-side git in a workspace the sandbox writes runs nothing from it: no hooks, no fsmonitor.
# (The sandbox sees the workspace's .git/config read-only, so no filter or diff driver is
# defined there either: `blocks/sandbox/docker.py`.)
GUARDS = ("core.hooksPath=/dev/null", "core.fsmonitor=false")


def workspace_repo(workspace: Path) -> git.Repo:
    """The workspace's repository, opened for git on this side: the sandbox's user owns it (git
    would refuse it as "dubious"), and nothing planted in it runs here. InvalidGitRepositoryError
    for a .git folder that sends git elsewhere (a `commondir` file: another config, other hooks)."""
    if (workspace / ".git" / "commondir").exists():
        raise git.InvalidGitRepositoryError(f"{workspace}/.git/commondir sends git to another folder: refused")
    repo = git.Repo(workspace)
    repo.git.set_persistent_git_options(c=[f"safe.directory={Path(workspace).resolve()}", *GUARDS])
    return repo


def read_git_state(workspace: Path, start_head: str | None = None) -> GitState:
    try:
        repo = workspace_repo(workspace)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return GitState()
    with repo:
        _read_only(repo)
        try:
            head = repo.head.commit.hexsha
        except ValueError:  # no commit yet
            head = None
        branch = None if repo.head.is_detached else repo.active_branch.name
        changes = _status(repo)
        commits = 0
        diff_stat = ""
        if head and start_head and start_head != head:
            commits = int(repo.git.rev_list("--count", f"{start_head}..{head}"))
        if head and start_head:
            diff_stat = repo.git.diff_index("--shortstat", start_head).strip()  # plumbing: `git diff` writes the index
        return GitState(
            is_repo=True,
            branch=branch,
            head=head,
            dirty_files=[p for p in changes.get("dirty", []) if _is_work(p)],
            untracked_files=[p for p in changes.get("untracked", []) if _is_work(p)],
            conflicts=changes.get("conflict", []),
            commits_since_start=commits,
            diff_stat=diff_stat,
        )


AUTODEV_ACTOR = git.Actor("autodev", "autodev@localhost")


UNMERGED = {"DD", "AU", "UD", "UA", "DU", "AA", "UU"}  # `git status`'s two letters for a conflict


def _status(repo: git.Repo) -> dict[str, list[str]]:
    """The changed paths by kind ("dirty", "untracked", "conflict"), sorted, from one `git status`
    (which, unlike gitpython's index diffs, leaves the index as it is when reading)."""
    entries = iter(repo.git.status("--porcelain=v1", "-z", "--untracked-files=all").split("\0"))
    kinds: dict[str, list[str]] = {}
    for entry in entries:
        if not entry:
            continue
        letters, path = entry[:2], entry[3:]
        if letters[0] in "RC":
            next(entries, None)  # a rename's or copy's former path follows
        kind = "untracked" if letters == "??" else "conflict" if letters in UNMERGED else "dirty"
        kinds.setdefault(kind, []).append(path)
    return {kind: sorted(paths) for kind, paths in kinds.items()}


def _read_only(repo: git.Repo) -> None:
    """A read takes no lock: `git status` would otherwise refresh the index under index.lock,
    and a commit made at that moment (a step in the sandbox, the user in their checkout) fails."""
    repo.git.update_environment(GIT_OPTIONAL_LOCKS="0")


def _is_work(path: str) -> bool:
    """Not autodev's own files or Python's caches (which a repository may not ignore)."""
    parts = path.split("/")
    return not ({"__pycache__", ".pytest_cache", ".autodev"} & set(parts) or path.endswith(".pyc"))


def commit_all(workspace: Path, message: str) -> str:
    """Make `workspace` a git repository (when it is not one) and commit every file in it;
    the new commit's sha."""
    if not (workspace / ".git").exists():
        git.Repo.init(workspace, initial_branch="main").close()
    with workspace_repo(workspace) as repo:
        repo.git.add(A=True)
        return repo.index.commit(message, author=AUTODEV_ACTOR, committer=AUTODEV_ACTOR, skip_hooks=True).hexsha


def has_commits(path: Path) -> bool:
    """`path` is the top of a git repository with at least one commit."""
    try:
        with git.Repo(path) as repo:
            return Path(repo.working_tree_dir or "").resolve() == path.resolve() and repo.head.is_valid()
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return False


def read_repo_map(path: Path) -> RepoMap:
    """What the decomposer is told of a repository: its tracked files (capped), the head of its
    README, its language and test command, and the uncommitted changes a worktree leaves out."""
    with git.Repo(path) as repo:
        _read_only(repo)
        files = repo.git.ls_files().splitlines()
        left_out = sorted({line[3:] for line in repo.git.status("--porcelain").splitlines() if line[3:]})
    readme = next((f for f in files if f.lower() in ("readme.md", "readme.rst", "readme.txt", "readme")), None)
    head = "\n".join((path / readme).read_text(errors="replace").splitlines()[:40]) if readme else ""
    telling = {name: (path / name).read_text(errors="replace") for name in ("package.json", "Makefile") if name in files}
    found = detect(files, telling)
    return RepoMap(
        files=files[:FILE_LIMIT], file_count=len(files), readme=head, language=found.language,
        test_command=found.test_command, left_out=left_out,
    )


def head_of(workspace: Path) -> str | None:
    """The workspace's HEAD commit; None when it is no git repository or has no commit."""
    try:
        with workspace_repo(workspace) as repo:
            return repo.head.commit.hexsha
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError):
        return None


def commit_round(workspace: Path, message: str, since: str | None = None) -> str | None:
    """Commit what an agent round changed in the workspace (autodev's own files and Python's
    caches left out); the new commit's sha, or None when nothing changed. An agent that
    committed its work itself since `since` (the round's start) gets a commit that marks the
    round's end, so every round is one autodev commit. RoundNotCommitted when git refused it."""
    try:
        repo = workspace_repo(workspace)
    except git.InvalidGitRepositoryError as exc:
        raise RoundNotCommitted(str(exc)) from exc
    with repo:
        _read_only(repo)
        work = [path for path in _changed(repo) if path and _is_work(path)]
        if not work and not (since and _agent_committed(repo, since)):
            return None
        try:
            return _while_locked(lambda: _add_and_commit(repo, work, message))
        except (git.GitCommandError, OSError) as exc:
            raise RoundNotCommitted(git_refusal(exc)) from exc


def git_refusal(exc: git.GitCommandError | OSError) -> str:
    """What git (or the file system under it) said when it refused, in one line."""
    detail = exc.stderr.strip().removeprefix("stderr: '") if isinstance(exc, git.GitCommandError) else str(exc)
    return detail.splitlines()[0][:300] if detail else str(exc)


def _changed(repo: git.Repo) -> list[str]:
    """The paths `git status` lists: changed, added, deleted, untracked."""
    entries = iter(repo.git.status("--porcelain", "-z", "-uall").split("\0"))
    changed = []
    for entry in entries:  # "XY path"; a rename or copy is followed by its old path
        if entry:
            changed.append(entry[3:])
            if entry[0] in "RC":
                changed.append(next(entries, ""))
    return changed


def _agent_committed(repo: git.Repo, since: str) -> bool:
    """Someone other than autodev committed on the branch since `since` (the agent, in the sandbox)."""
    return any(email != AUTODEV_ACTOR.email for email in repo.git.log("--format=%ae", f"{since}..HEAD").split())


class RoundNotCommitted(Exception):
    """git refused an agent round's commit (another git process kept a lock, a broken index);
    the changes stay in the workspace, for the next round's commit."""


def _add_and_commit(repo: git.Repo, paths: list[str], message: str) -> str:
    """The commit of `paths`; a merge the round finished (its conflicts resolved) has both parents."""
    if paths:
        repo.git.add("-A", "--", *paths)
    git_dir = Path(repo.git_dir)
    merging = (git_dir / "MERGE_HEAD").read_text().split() if (git_dir / "MERGE_HEAD").is_file() else []
    parents = [repo.head.commit, *(repo.commit(sha) for sha in merging)] if merging else None
    sha = repo.index.commit(message, parent_commits=parents, author=AUTODEV_ACTOR, committer=AUTODEV_ACTOR, skip_hooks=True).hexsha
    for name in ("MERGE_HEAD", "MERGE_MSG", "MERGE_MODE"):
        (git_dir / name).unlink(missing_ok=True)
    keep_owner(git_dir)
    return sha


def keep_owner(path: Path) -> None:
    """git run here as root writes its files as root; the sandbox runs as the workspace's owner,
    who must still be able to write them: what root wrote under `path` is handed back to its owner."""
    owner = path.stat()
    if os.geteuid() != 0 or owner.st_uid == 0:
        return
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            entry = os.path.join(root, name)
            with contextlib.suppress(FileNotFoundError):  # a lock file git removed meanwhile
                if os.lstat(entry).st_uid != owner.st_uid:
                    os.lchown(entry, owner.st_uid, owner.st_gid)


LOCK_WAIT_S = 10.0  # how long a commit waits for another git process in the workspace


def _while_locked(work: Callable[[], T]) -> T:
    """`work()`, tried again while another git process holds the index or a ref: git takes
    its locks without waiting, so a commit made while a step's git runs in the sandbox would
    fail at once. After LOCK_WAIT_S the lock's error is raised."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            return work()
        except (git.GitCommandError, OSError) as exc:  # gitpython's own ref locks raise OSError
            if ".lock" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def change_digest(workspace: Path, sha: str, since: str | None = None) -> str:
    """What a round changed (from `since` to `sha`; without `since`, the commit `sha` alone), as a
    short digest of its patch (blob ids left out), so a round that makes the same change as an
    earlier one is known."""
    with workspace_repo(workspace) as repo:
        patch = repo.git.diff("--no-color", since, sha) if since else repo.git.show("--format=", "--no-color", sha)
    lines = [line for line in patch.splitlines() if not line.startswith("index ")]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def branch_changes(worktree: Path, base: str) -> BranchChanges:
    """The commits a run made on its branch and what they change, against `base`."""
    with workspace_repo(worktree) as repo:
        log = repo.git.log("--reverse", "--topo-order", "--format=%h %s", f"{base}..HEAD")
        stat = repo.git.diff("--shortstat", base, "HEAD").strip()
    return BranchChanges(commits=log.splitlines(), diff_stat=stat)
