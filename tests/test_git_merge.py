"""A parallel run's tasks in real git, without Docker: each task's clone on its own branch, a
clean merge as one merge commit, a conflict that leaves the run's branch alone and marks the
conflict in the task's clone, the agent's resolution committed as a merge, a merge undone, a
merge not made twice after a crash, and the sandbox's mounts following the borrowed objects."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import git
import pytest

from autodev.blocks.git_branch import open_branch
from autodev.blocks.git_merge import hand_back, lane_clone, merge_lane, open_lane, undo_merge, verified
from autodev.blocks.git_state import commit_round
from autodev.blocks.sandbox.docker import git_mounts


def run_clone(tmp_path: Path) -> Path:
    """A user's repository with notes.txt, and the run's clone of it on its branch."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "notes.txt").write_text("line\n")
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["-c", "user.name=me", "-c", "user.email=me@x", "commit", "-qm", "start"]):
        subprocess.run(["git", *command], cwd=repo, check=True)
    workspace = tmp_path / "work" / "p-1"
    workspace.parent.mkdir()
    open_branch(repo, "autodev/p-1", workspace)
    return workspace


def task_round(workspace: Path, lane: str, text: str) -> Path:
    """A task's agent appends `text` to notes.txt in its clone; autodev commits the round."""
    clone = open_lane(workspace, lane)
    with (clone / "notes.txt").open("a") as notes:
        notes.write(text)
    assert commit_round(clone, f"autodev: {lane} (attempt 1)")
    return clone


def log(path: Path, *args: str) -> list[str]:
    return git.Repo(path).git.log("--format=%s", *args).splitlines()


def test_a_task_works_in_its_own_clone_and_is_merged_as_one_merge_commit(tmp_path):
    workspace = run_clone(tmp_path)
    clone = task_round(workspace, "task-1", "alpha\n")
    assert clone == lane_clone(workspace, "task-1") and clone.parent.name == "p-1.lanes"  # beside the run's clone, not in it
    assert git.Repo(clone).active_branch.name == "autodev/p-1-task-1"
    merge = merge_lane(workspace, "task-1")
    assert merge.commit and not merge.conflicts and (workspace / "notes.txt").read_text() == "line\nalpha\n"
    assert log(workspace, "--first-parent") == ["autodev: merge autodev/p-1-task-1", "start"]
    assert log(workspace, "-1", "HEAD^2") == ["autodev: task-1 (attempt 1)"]
    again = merge_lane(workspace, "task-1")  # the orchestrator died after the merge: it is not made twice
    assert again.commit is None and again.before == merge.before and len(log(workspace)) == 3


def test_a_conflict_leaves_the_run_branch_alone_and_is_marked_in_the_task_for_its_agent(tmp_path):
    workspace = run_clone(tmp_path)
    task_round(workspace, "task-1", "alpha\n")
    second = task_round(workspace, "task-2", "beta\n")
    merge_lane(workspace, "task-1")
    head = git.Repo(workspace).head.commit.hexsha
    conflict = merge_lane(workspace, "task-2")
    assert conflict.conflicts == ["notes.txt"] and conflict.commit is None
    assert git.Repo(workspace).head.commit.hexsha == head and not git.Repo(workspace).is_dirty()
    assert hand_back(workspace, "task-2", "conflicts to resolve") == ["notes.txt"]
    assert "<<<<<<<" in (second / "notes.txt").read_text()
    (second / "notes.txt").write_text("line\nalpha\nbeta\n")  # the agent resolves it
    sha = commit_round(second, "autodev: task-2 (attempt 2)")
    assert sha is not None and len(git.Repo(second).commit(sha).parents) == 2  # the resolution finishes the merge
    assert not (second / ".git" / "MERGE_HEAD").exists()
    merged = merge_lane(workspace, "task-2")
    assert merged.commit and (workspace / "notes.txt").read_text() == "line\nalpha\nbeta\n"


def test_a_merge_whose_tests_fail_is_undone_and_the_run_branch_is_handed_to_the_task(tmp_path):
    workspace = run_clone(tmp_path)
    task_round(workspace, "task-1", "alpha\n")
    clone = open_lane(workspace, "task-2")
    (clone / "other.txt").write_text("b\n")
    commit_round(clone, "autodev: task-2 (attempt 1)")
    merge_lane(workspace, "task-1")
    merge = merge_lane(workspace, "task-2")
    undo_merge(workspace, merge)
    assert git.Repo(workspace).head.commit.hexsha == merge.before and not (workspace / "other.txt").exists()
    assert hand_back(workspace, "task-2", "the tests failed after merging it") == []
    assert (clone / "notes.txt").read_text() == "line\nalpha\n"  # the task now has the run's work, to fix the tests on
    assert log(clone, "-1") == ["autodev: merge autodev/p-1 into this task (the tests failed after merging it)"]


def test_the_sandbox_of_a_task_mounts_every_object_folder_its_clone_borrows(tmp_path):
    workspace = run_clone(tmp_path)
    clone = open_lane(workspace, "task-1")
    mounts = git_mounts(clone)
    borrowed = {str((workspace / ".git" / "objects").resolve()), str((tmp_path / "repo" / ".git" / "objects").resolve())}
    assert borrowed <= set(mounts) and all(mounts[path]["mode"] == "ro" for path in borrowed)


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB file system of its own (a tmpfs: needs root, as scripts/test.sh runs)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_disk_that_fills_during_a_merge_leaves_the_run_branch_as_it_was_and_says_why(small_disk):
    workspace = run_clone(small_disk)
    clone = task_round(workspace, "task-1", "alpha\n")
    (clone / "big.txt").write_bytes(os.urandom(400_000))  # objects the merge must write into the run's clone
    commit_round(clone, "autodev: task-1 (attempt 2)")
    head = git.Repo(workspace).head.commit.hexsha
    filler = small_disk / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as out:  # the disk fills up
        while True:
            out.write(b"\0" * 65536)
    with pytest.raises((git.GitCommandError, OSError)) as refused:
        merge_lane(workspace, "task-1")
    assert "No space left on device" in str(refused.value)
    assert git.Repo(workspace).head.commit.hexsha == head and not (workspace / ".git" / "MERGE_HEAD").exists()
    filler.unlink()  # space again: the same merge goes through, nothing was lost
    assert merge_lane(workspace, "task-1").commit and (workspace / "big.txt").is_file()


def test_a_task_begun_while_a_merge_is_under_test_starts_without_that_merge(tmp_path):
    workspace = run_clone(tmp_path)
    task_round(workspace, "task-1", "alpha\n")
    merge_lane(workspace, "task-1")  # merged; its tests are still running
    assert (open_lane(workspace, "task-2") / "notes.txt").read_text() == "line\n"  # not work that may be undone
    verified(workspace)  # the tests passed on it
    assert (open_lane(workspace, "task-3") / "notes.txt").read_text() == "line\nalpha\n"


def test_conflict_markers_a_task_committed_are_not_merged(tmp_path):
    workspace = run_clone(tmp_path)
    task_round(workspace, "task-1", "alpha\n")
    clone = task_round(workspace, "task-2", "beta\n")
    merge_lane(workspace, "task-1")
    merge_lane(workspace, "task-2")  # conflicts
    hand_back(workspace, "task-2", "conflicts to resolve")
    commit_round(clone, "autodev: task-2 (attempt 2)")  # the agent changed nothing: the markers are committed
    head = git.Repo(workspace).head.commit.hexsha
    refused = merge_lane(workspace, "task-2")
    assert refused.markers == ["notes.txt"] and refused.commit is None
    assert git.Repo(workspace).head.commit.hexsha == head and "<<<<<<<" not in (workspace / "notes.txt").read_text()


def test_tests_that_fail_after_a_merge_git_will_not_undo_end_the_step_saying_how_to_undo_it(tmp_path):
    from prefect.logging import disable_run_logger

    from autodev.core.commands import CommandResult
    from autodev.core.models import utcnow
    from autodev.tasks.merge import _settled

    workspace = run_clone(tmp_path)
    task_round(workspace, "task-1", "alpha\n")
    merge = merge_lane(workspace, "task-1")
    (workspace / ".git" / "index.lock").write_text("")  # another git at work: git refuses to reset
    red = CommandResult(status="failed", exit_code=1, started_at=utcnow(), finished_at=utcnow(), output_tail="1 failed\n")
    with disable_run_logger():
        settled = _settled(workspace, "task-1", merge, red)  # no exception: the step ends, and says so
    assert settled.status == "failed" and "git refused to undo the merge" in settled.exit_reason
    assert settled.host_refused  # a person's turn: the step blocks instead of going back to the task's agent
    assert f"reset --hard {merge.before[:12]}" in settled.output_tail and "index.lock" in settled.output_tail
