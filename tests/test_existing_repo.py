"""`autodev run TASK.md --workspace REPO` on a git repository that exists: a branch of its own in
a worktree, the user's checkout untouched (a dirty tree too), a baseline red test not blamed on
the agent, a commit per agent round, and each task's outcome."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import git
import pytest

from tests.test_cli import autodev

pytestmark = [pytest.mark.slow, pytest.mark.docker]
ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "examples" / "repos" / "shelf-tasks.md"


def shelf_repository(tmp_path: Path) -> git.Repo:
    """The example repository as a user has it: committed, then edited and not committed."""
    path = tmp_path / "shelf"
    shutil.copytree(ROOT / "examples" / "repos" / "shelf", path)
    repo = git.Repo.init(path, initial_branch="main")
    repo.git.add(A=True)
    repo.index.commit("shelf 0.3", author=git.Actor("me", "me@example.com"), committer=git.Actor("me", "me@example.com"))
    (path / "README.md").write_text((path / "README.md").read_text() + "\nlocal notes, not committed\n")
    (path / "scratch.txt").write_text("mine\n")
    return repo


def test_tasks_in_an_existing_repository_run_on_a_branch_of_their_own(prefect_api, docker_engine, tmp_path):
    repo = shelf_repository(tmp_path)
    head, readme = repo.head.commit.hexsha, (Path(repo.working_dir) / "README.md").read_text()
    result = autodev("run", str(TASKS), "--workspace", repo.working_dir, "--replay", str(ROOT / "examples/replay/shelf.yaml"), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    branch = report["repository"]["branch"]
    assert branch.startswith("autodev/shelf-tasks-")
    # The checkout is untouched: its branch, its HEAD, its uncommitted edit and its untracked file.
    assert repo.active_branch.name == "main" and repo.head.commit.hexsha == head
    assert (Path(repo.working_dir) / "README.md").read_text() == readme and (Path(repo.working_dir) / "scratch.txt").exists()
    assert report["repository"]["left_out"] == ["README.md", "scratch.txt"]
    # One commit per agent round, on the branch, with the agent's files only.
    assert [c.split(" ", 1)[1] for c in report["repository"]["commits"]] == ["autodev: remove (attempt 1)", "autodev: report (attempt 1)"]
    changed = repo.git.diff("--name-only", head, branch).split()
    assert sorted(changed) == ["shelf/inventory.py", "tests/test_remove.py", "tests/test_report.py"]
    # The baseline's red test (tests/test_csv.py) was there before: the checks do not blame the agent.
    assert report["repository"]["tests_before"].startswith("1 failed, 2 passed")
    assert report["repository"]["tests_after"].startswith("1 failed, 6 passed")
    steps = {s["id"]: s for s in report["steps"]}
    assert steps["baseline"]["status"] == "succeeded" and steps["check-report"]["exit_code"] == 1
    assert all(s["status"] == "succeeded" for s in report["steps"])
    assert [(t["task"], t["status"]) for t in report["tasks"]] == [
        ("Add `Inventory.remove(name, count=1)`", "succeeded"), ("Add `Inventory.report()`", "succeeded"),
    ]


def test_a_non_empty_directory_that_is_no_repository_is_refused_with_the_fix(tmp_path):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "notes.txt").write_text("x\n")
    refused = autodev("run", str(TASKS), "--workspace", str(tmp_path / "work"))
    assert refused.returncode == 2 and "not a git repository with commits" in refused.stderr and "git init" in refused.stderr


def scripted_model(request: dict) -> tuple[int, str]:
    """A model for a task list where the second task's agent never answers in time."""
    prompt = "\n".join(str(m.get("content", "")) for m in request.get("messages", []))
    if "a repository that exists" in prompt:
        cassette = __import__("yaml").safe_load((ROOT / "examples/replay/shelf.yaml").read_text())
        plan = cassette["responses"][0]["json"]
        plan["steps"][2] |= {"stall_timeout_s": 2, "max_stall_retries": 0}  # the report task's agent
        return 200, json.dumps(plan)
    if "Files you may edit" in prompt and "Add Inventory.remove" in prompt:
        cassette = __import__("yaml").safe_load((ROOT / "examples/replay/shelf.yaml").read_text())
        return 200, json.dumps(cassette["responses"][1]["json"])
    if "Files you may edit" in prompt:
        time.sleep(5)  # longer than the step's stall timeout: the attempt stalls, the task blocks
        return 500, "too late"
    return 500, "no advice from this model"  # the insights keep the rules' wording


def test_a_task_that_blocks_does_not_hold_back_the_other(prefect_api, docker_engine, tmp_path, monkeypatch):
    from blocks.replay import ModelServer as Server

    repo = shelf_repository(tmp_path)
    with Server(scripted_model) as model:
        monkeypatch.setenv("AUTODEV_LLM_MODEL", "openai/scripted")
        monkeypatch.setenv("AUTODEV_LLM_API_BASE", model.api_base)
        monkeypatch.setenv("AUTODEV_LLM_API_KEY", "test-key")
        result = autodev("run", str(TASKS), "--workspace", repo.working_dir, "--json")
    assert result.returncode == 3, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert [(t["task"], t["status"]) for t in report["tasks"]] == [
        ("Add `Inventory.remove(name, count=1)`", "succeeded"), ("Add `Inventory.report()`", "blocked"),
    ]
    assert [b["step_id"] for b in report["blockers"]] == ["report"]
    assert [c.split(" ", 1)[1] for c in report["repository"]["commits"]] == ["autodev: remove (attempt 1)"]
    assert subprocess.run(["git", "-C", repo.working_dir, "status", "--porcelain"], capture_output=True, text=True).stdout.split() == [
        "M", "README.md", "??", "scratch.txt",
    ]
