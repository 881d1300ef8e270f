"""`autodev run` on work autodev has never seen. On a git repository that exists: a branch of its own in
a worktree, the user's checkout untouched (a dirty tree too), a baseline red test not blamed on
the agent, a commit per agent round, and each task's outcome. And requirements no template fits,
developed test-first from the generic template."""

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
    # --parallel 1: the tasks one after another on one branch (the parallel night: tests/test_parallel.py)
    result = autodev("run", str(TASKS), "--workspace", repo.working_dir, "--replay", str(ROOT / "examples/replay/shelf.yaml"),
                     "--parallel", "1", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    branch = report["repository"]["branch"]
    assert branch.startswith("autodev/shelf-tasks-")
    # The checkout is untouched: its branch, its HEAD, its uncommitted edit and its untracked file.
    assert repo.active_branch.name == "main" and repo.head.commit.hexsha == head
    assert (Path(repo.working_dir) / "README.md").read_text() == readme and (Path(repo.working_dir) / "scratch.txt").exists()
    assert report["repository"]["left_out"] == ["README.md", "scratch.txt"]
    # One commit per agent round, on the branch, with the agent's files only.
    # (The built-in agent commits each round in the sandbox, with its summary: git works there.)
    assert [c.split(" ", 1)[1] for c in report["repository"]["commits"]] == [
        "remove: Inventory.remove with a ValueError naming the item, and its tests", "report: Inventory.report sorted by name, and its tests",
    ]
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


def test_a_repository_with_no_commit_and_an_order_in_a_cycle_are_refused_before_anything_runs(tmp_path):
    empty = tmp_path / "empty"
    git.Repo.init(empty)
    (empty / "app.py").write_text("x = 1\n")
    refused = autodev("run", str(TASKS), "--workspace", str(empty))
    assert refused.returncode == 2 and "a git repository with no commit yet" in refused.stderr and "git commit" in refused.stderr
    cycle = tmp_path / "CYCLE.md"
    cycle.write_text("# chores\n\n- [ ] a, after task 2\n- [ ] b, after task 1\n")
    refused = autodev("run", str(cycle), "--workspace", shelf_repository(tmp_path).working_dir)
    assert refused.returncode == 2 and "cycle: task 1 -> task 2 -> task 1" in refused.stderr
    assert "developing" not in refused.stderr  # refused before any flow run began


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
    from autodev.blocks.replay import ModelServer as Server

    repo = shelf_repository(tmp_path)
    with Server(scripted_model) as model:
        monkeypatch.setenv("AUTODEV_LLM_MODEL", "openai/scripted")
        monkeypatch.setenv("AUTODEV_LLM_API_BASE", model.api_base)
        monkeypatch.setenv("AUTODEV_LLM_API_KEY", "test-key")
        result = autodev("run", str(TASKS), "--workspace", repo.working_dir, "--parallel", "1", "--json")
    assert result.returncode == 3, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert [(t["task"], t["status"]) for t in report["tasks"]] == [
        ("Add `Inventory.remove(name, count=1)`", "succeeded"), ("Add `Inventory.report()`", "blocked"),
    ]
    assert [b["step_id"] for b in report["blockers"]] == ["report"]
    # The morning report: per task, its time and tokens; for the blocked one, why and what next.
    done, blocked = report["tasks"]
    assert done["tokens"] > 0 and done["duration_s"] > 0 and done["reason"] == done["action"] == ""
    assert "stalled" in blocked["reason"] and "could not reach its model" in blocked["action"]
    assert blocked["command"] == f"autodev resume {report['run_id']} --step report --action retry"
    assert [c.split(" ", 1)[1] for c in report["repository"]["commits"]] == ["remove: Inventory.remove with a ValueError naming the item, and its tests"]
    assert subprocess.run(["git", "-C", repo.working_dir, "status", "--porcelain"], capture_output=True, text=True).stdout.split() == [
        "M", "README.md", "??", "scratch.txt",
    ]


INVENTORY = """# Inventory tracker

Keep count of what is on the shelves.

- `add(stock, name, count)` returns a new dict with `count` more of `name`
- `remove(stock, name, count)` returns a new dict with `count` fewer; removing more than there is raises `ValueError`
"""
TESTS = """import pytest

from inventory_tracker import add, remove


def test_add_counts_up():
    assert add({}, "apple", 2) == {"apple": 2}


def test_removing_too_many_is_an_error():
    with pytest.raises(ValueError):
        remove({"apple": 1}, "apple", 2)
"""
CODE = '''"""inventory-tracker: see REQUIREMENTS.md."""


def add(stock, name, count):
    return {**stock, name: stock.get(name, 0) + count}


def remove(stock, name, count):
    if stock.get(name, 0) < count:
        raise ValueError(f"only {stock.get(name, 0)} {name}")
    return {**stock, name: stock[name] - count}
'''


def generic_model(request: dict) -> tuple[int, str]:
    """A model that picks no template, keeps the generic test-first plan and writes tests, then code."""
    from autodev.core.decomposition import template_plan
    from autodev.core.scaffold import load_manifest, parse_requirements

    prompt = "\n".join(str(m.get("content", "")) for m in request.get("messages", []))
    if "You choose the scaffold" in prompt:
        return 200, json.dumps({"template": None, "why": "no template is an inventory tracker"})
    if "into an autodev plan" in prompt:
        plan = template_plan(parse_requirements(INVENTORY), load_manifest("python-package"))
        return 200, plan.model_dump_json(exclude_defaults=True)
    if "Files you may edit" in prompt and "Write pytest tests" in prompt:
        return 200, json.dumps({"summary": "tests", "edits": [{"path": "tests/test_inventory_tracker.py", "content": TESTS}]})
    if "Files you may edit" in prompt:
        return 200, json.dumps({"summary": "add and remove", "edits": [{"path": "inventory_tracker/__init__.py", "content": CODE}]})
    return 500, "no advice from this model"


def test_requirements_no_template_fits_are_developed_test_first(prefect_api, docker_engine, tmp_path, monkeypatch):
    from autodev.blocks.replay import ModelServer as Server

    (tmp_path / "inventory.md").write_text(INVENTORY)
    with Server(generic_model) as model:
        monkeypatch.setenv("AUTODEV_LLM_MODEL", "openai/scripted")
        monkeypatch.setenv("AUTODEV_LLM_API_BASE", model.api_base)
        monkeypatch.setenv("AUTODEV_LLM_API_KEY", "test-key")
        result = autodev("run", str(tmp_path / "inventory.md"), "--workspace", str(tmp_path / "ws"), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    steps = {s["id"]: s for s in json.loads(result.stdout)["steps"]}
    assert steps["tests-fail-first"]["status"] == "succeeded" and steps["tests-fail-first"]["exit_code"] in (1, 2)
    assert steps["test"]["status"] == "succeeded" and "2 passed" in steps["test"]["output_tail"]
    assert (tmp_path / "ws" / "tests" / "test_inventory_tracker.py").read_text() == TESTS
