"""A run's branch of a repository that exists, with real git: a clone of its own that borrows the
repository's objects, a commit per agent round (also when the agent committed by itself), and
the branch brought back into the repository at the end, its checkout untouched."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from autodev.blocks.git_branch import open_branch, publish_branch
from autodev.blocks.git_state import commit_round, head_of
from autodev.blocks.sandbox.docker import borrowed_objects
from autodev.core.errors import BadInput


def git(cwd: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=me", "-c", "user.email=me@example.com", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "a.txt").write_text("a\n")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "first")
    (path / "a.txt").write_text("mine, not committed\n")
    return path


def test_a_runs_clone_borrows_the_objects_and_its_branch_comes_back_to_the_repository(repository, tmp_path):
    clone = tmp_path / "clone"
    base = open_branch(repository, "autodev/night", clone)
    assert base == head_of(repository) and (clone / ".git").is_dir()
    objects = str(repository / ".git" / "objects")
    assert borrowed_objects(clone) == {objects: {"bind": objects, "mode": "ro"}}  # what the sandbox mounts
    (clone / "b.txt").write_text("b\n")
    assert commit_round(clone, "autodev: task-1 (attempt 1)", since=base)
    publish_branch(clone, repository, "autodev/night")
    assert git(repository, "log", "--format=%s", "autodev/night").split("\n")[:2] == ["autodev: task-1 (attempt 1)", "first"]
    assert git(repository, "status", "--short", "--branch") == "## main\n M a.txt\n"  # the checkout as it was
    with pytest.raises(BadInput, match="branch autodev/night exists already"):
        open_branch(repository, "autodev/night", tmp_path / "again")


def test_a_round_whose_agent_committed_by_itself_is_still_one_autodev_commit(repository, tmp_path):
    clone = tmp_path / "clone"
    since = open_branch(repository, "autodev/night", clone)
    (clone / "b.txt").write_text("b\n")
    git(clone, "add", "b.txt")
    git(clone, "commit", "-qm", "agent: b")  # the agent, in the sandbox
    sha = commit_round(clone, "autodev: task-1 (attempt 1)", since=since)
    assert sha and git(clone, "log", "--format=%s").split("\n")[:3] == ["autodev: task-1 (attempt 1)", "agent: b", "first"]
    assert commit_round(clone, "autodev: task-1 (attempt 2)", since=sha) is None  # a round that did nothing
