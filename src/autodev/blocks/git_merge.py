"""A parallel run's tasks in git: each task's clone of the run's clone, on a branch of its own,
and the merge of its branch into the run's branch (`core/lanes.py` says when).

A task's clone (`<workspace>.lanes/<task>`) is a `git clone --shared` of the run's clone as its
tests last passed (`VERIFIED`) when the task starts, on the branch `<run's branch>-<task>`; it borrows the run's objects
(which borrow the repository's), so git works in its sandbox as in the run's. A merge fetches
the task's branch into the run's clone and merges it there (`--no-ff`, one merge commit per
task); a merge that conflicts, or whose tests turn red, is undone, and the run's branch is merged
into the task's instead (the conflicts marked), for the task's agent to resolve. Everything here
runs on the host, one merge at a time, and is safe to run again after a crash: a branch merged
already is not merged twice.
"""

from __future__ import annotations

from pathlib import Path

import git
from pydantic import BaseModel, Field

from autodev.blocks.git_branch import fetch, open_branch
from autodev.blocks.git_state import AUTODEV_ACTOR, keep_owner, workspace_repo

VERIFIED = "refs/autodev/verified"  # the run branch where the tests last passed after a merge (none before the first)
IDENTITY = {f"GIT_{who}_{what}": value for who in ("AUTHOR", "COMMITTER")
            for what, value in (("NAME", AUTODEV_ACTOR.name), ("EMAIL", AUTODEV_ACTOR.email))}  # the merge commits' author


def lane_clone(workspace: Path, lane: str) -> Path:
    """Where a task's clone is: beside the run's clone, not in it (its tests would find it)."""
    workspace = workspace.resolve()
    return workspace.parent / f"{workspace.name}.lanes" / lane


def open_lane(workspace: Path, lane: str) -> Path:
    """The task's clone, made on its own branch the first time, from the run branch as its tests
    last passed (never a merge still under test); kept as it is when a resumed run finds it."""
    clone = lane_clone(workspace, lane)
    if not (clone / ".git").is_dir():
        clone.parent.mkdir(parents=True, exist_ok=True)
        with workspace_repo(workspace) as repo:
            branch = repo.active_branch.name
            start = VERIFIED if _has_ref(repo, VERIFIED) else f"refs/heads/{branch}"  # never a merge still under test
        open_branch(workspace, f"{branch}-{lane}", clone, start=start)
    return clone


class Merge(BaseModel):
    """A task's branch merged into the run's (or not: `conflicts`)."""

    branch: str  # the task's branch
    tip: str  # its commit that was merged
    before: str  # the run's HEAD before the merge
    commit: str | None = None  # the merge commit (None: the branch was merged already, or it conflicted)
    conflicts: list[str] = Field(default_factory=list)  # the files both changed in ways git cannot merge
    markers: list[str] = Field(default_factory=list)  # files the task left conflict markers in (not merged)


def merge_lane(workspace: Path, lane: str) -> Merge:
    """Merge the task's branch into the run's branch; a conflict leaves the run's branch as it
    was. GitCommandError when git refuses for another reason (a full disk): nothing is merged."""
    clone = lane_clone(workspace, lane)
    with workspace_repo(clone) as task:
        branch = task.active_branch.name
    try:
        with workspace_repo(workspace) as repo:
            return _merge(repo, clone, lane, branch)
    finally:
        keep_owner(workspace)


def _merge(repo: git.Repo, clone: Path, lane: str, branch: str) -> Merge:
    _abort_merge(repo)  # one a dead orchestrator left half done
    fetch(repo, clone, f"+refs/heads/{branch}:refs/autodev/{lane}")
    tip, head = repo.commit(f"refs/autodev/{lane}").hexsha, repo.head.commit
    if not _has_ref(repo, VERIFIED):  # the run branch as the tests last passed on it: where new tasks start
        repo.git.update_ref(VERIFIED, head.hexsha)
    if repo.is_ancestor(repo.commit(tip), head):  # merged before the orchestrator died: not twice
        before = head.parents[0].hexsha if len(head.parents) == 2 and head.parents[1].hexsha == tip else head.hexsha
        return Merge(branch=branch, tip=tip, before=before)
    try:
        conflicts = _merge_commit(repo, tip, f"autodev: merge {branch}")
    finally:
        _abort_merge(repo)  # a conflicting or refused merge leaves the run's branch as it was
    if conflicts:
        return Merge(branch=branch, tip=tip, before=head.hexsha, conflicts=conflicts)
    if markers := _still_marked(repo, head.hexsha):  # a conflict the task's agent "resolved" by committing its markers
        repo.git.reset("--hard", "-q", head.hexsha)
        return Merge(branch=branch, tip=tip, before=head.hexsha, markers=markers)
    return Merge(branch=branch, tip=tip, before=head.hexsha, commit=repo.head.commit.hexsha)


def _still_marked(repo: git.Repo, before: str) -> list[str]:
    """The files the merge changed that hold conflict markers (`<<<<<<< ` / `>>>>>>> ` lines)."""
    changed = repo.git.diff("--name-only", before, "HEAD").split()
    try:
        return repo.git.grep("-l", "-E", "^(<<<<<<<|>>>>>>>)( |$)", "HEAD", "--", *changed).replace("HEAD:", "").split() if changed else []
    except git.GitCommandError:  # git grep found nothing
        return []


def verified(workspace: Path) -> None:
    """The tests passed on the run branch as it is: new tasks start from here."""
    with workspace_repo(workspace) as repo:
        repo.git.update_ref(VERIFIED, repo.head.commit.hexsha)
    keep_owner(workspace)


def _has_ref(repo: git.Repo, ref: str) -> bool:
    try:
        repo.git.rev_parse("--verify", "--quiet", ref)
        return True
    except git.GitCommandError:
        return False


def undo_merge(workspace: Path, merge: Merge) -> None:
    """Take a merge off the run's branch (its tests turned red): back to where it was."""
    with workspace_repo(workspace) as repo:
        if repo.head.commit.hexsha != merge.before:
            repo.git.reset("--hard", "-q", merge.before)
    keep_owner(workspace)


def hand_back(workspace: Path, lane: str, why: str) -> list[str]:
    """Merge the run's branch into the task's, for its agent to go on from the work merged since
    it began; the files that conflict, left marked (<<<<<<<) and unmerged for the agent."""
    clone = lane_clone(workspace, lane)
    with workspace_repo(workspace) as repo:
        head, branch = repo.head.commit.hexsha, repo.active_branch.name
    try:
        with workspace_repo(clone) as task:
            return _merge_commit(task, head, f"autodev: merge {branch} into this task ({why})")
    finally:
        keep_owner(clone)


def _merge_commit(repo: git.Repo, rev: str, message: str) -> list[str]:
    """`rev` merged into `repo`'s branch as a merge commit of autodev's; the files that conflict
    (the merge then stays unfinished, marked), [] when it went through. GitCommandError when git
    refuses for another reason."""
    try:
        with repo.git.custom_environment(**IDENTITY):
            repo.git.merge("--no-ff", "--no-edit", "-m", message, rev)
        return []
    except git.GitCommandError:
        if conflicts := repo.git.diff("--name-only", "--diff-filter=U").split():
            return conflicts
        raise


def _abort_merge(repo: git.Repo) -> None:
    if (Path(repo.git_dir) / "MERGE_HEAD").exists():
        repo.git.merge("--abort")
