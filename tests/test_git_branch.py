"""A run's branch of a repository that exists, with real git: a clone of its own that borrows the
repository's objects, a commit per agent round (also when the agent committed by itself), and
the branch brought back into the repository at the end, its checkout untouched."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from autodev.blocks.git_branch import open_branch, publish_branch
from autodev.blocks.git_state import RoundNotCommitted, commit_round, head_of
from autodev.blocks.sandbox.docker import git_mounts
from autodev.core.errors import BadInput


def git(cwd: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=me", "-c", "user.email=me@example.com", "-c", "safe.directory=*", *args]
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
    objects, config = str(repository / ".git" / "objects"), str(clone / ".git" / "config")
    assert git_mounts(clone) == {  # what the sandbox mounts read-only
        config: {"bind": "/workspace/.git/config", "mode": "ro"}, objects: {"bind": objects, "mode": "ro"},
    }
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


def test_nothing_planted_in_a_workspaces_git_runs_on_the_host(repository, tmp_path):
    clone = tmp_path / "clone"
    since = open_branch(repository, "autodev/night", clone)
    marker = tmp_path / "ran-on-the-host"
    for hook in ("pre-commit", "post-index-change", "post-commit"):
        (clone / ".git" / "hooks" / hook).write_text(f"#!/bin/sh\ntouch {marker}\n")
        (clone / ".git" / "hooks" / hook).chmod(0o755)
    (clone / "b.txt").write_text("b\n")
    assert commit_round(clone, "autodev: task-1 (attempt 1)", since=since)
    assert not marker.exists()  # no hook ran
    (clone / ".git" / "commondir").write_text(str(tmp_path / "elsewhere"))  # another config, other hooks
    (clone / "c.txt").write_text("c\n")
    with pytest.raises(RoundNotCommitted, match="commondir sends git to another folder"):
        commit_round(clone, "autodev: task-1 (attempt 2)", since=since)


@pytest.mark.docker
def test_git_works_in_the_sandbox_on_the_branch_and_its_config_is_read_only(repository, tmp_path, docker_engine):
    from autodev.blocks.sandbox.docker import DockerSandbox
    from autodev.core.commands import CommandRequest
    from autodev.core.settings import DEFAULT_IMAGE

    clone = tmp_path / "clone"
    open_branch(repository, "autodev/night", clone)
    sandbox = DockerSandbox(image=DEFAULT_IMAGE).open(clone, "git-in-sandbox")
    try:
        def run(command: str) -> tuple[int | None, str]:
            out: list[bytes] = []
            result = sandbox.run(CommandRequest(command=command, timeout_s=30, stall_timeout_s=30), out.append)
            return result.exit_code, b"".join(out).decode()

        assert run("git log --format=%s && git branch --show-current") == (0, "first\nautodev/night\n")
        assert run("echo b > b.txt && git add b.txt && git commit -qm 'agent: b' && git log --format=%an -1")[1] == "autodev agent\n"
        code, said = run("git config core.hooksPath /tmp/evil")
        assert code != 0 and "config" in said  # the config is not the sandbox's to change
        assert run("touch " + str(repository / ".git" / "objects" / "x"))[0] != 0  # nor the repository's objects
    finally:
        sandbox.close()
    assert git(clone, "log", "--format=%s", "-1") == "agent: b\n"


def test_a_run_begun_in_a_worktree_before_clones_keeps_its_branch_where_it_is(repository, tmp_path):
    worktree = tmp_path / "worktree"
    git(repository, "worktree", "add", "-q", "-b", "autodev/old", str(worktree))
    (worktree / "b.txt").write_text("b\n")
    assert commit_round(worktree, "autodev: task-1 (attempt 1)")
    publish_branch(worktree, repository, "autodev/old")  # nothing to bring: the branch is the repository's
    assert git(repository, "log", "--format=%s", "-1", "autodev/old") == "autodev: task-1 (attempt 1)\n"
