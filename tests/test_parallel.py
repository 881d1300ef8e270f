"""The overnight backlog with real Codex CLI: `autodev run TASKS.md --workspace REPO --agent codex
--parallel 4` against a scripted Responses-API server on loopback, where each task's Codex gets
its own script (the server routes requests by the task's text).

Four tasks at once, each in a clone and on a branch of its own: two append to the same file, so
the second to merge conflicts and goes back to its agent, which resolves it; one agent hangs and
is caught by the stall clock while the others merge; one comes after task 1 and starts from its
merge (its agent's `git log` shows it). A second run does only the task left.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import AUTODEV
from tests.scripted_responses import ScriptedResponses, codex_config_args, message, shell, silent
from tests.test_codex import SECRET, small_repository

pytestmark = [pytest.mark.slow, pytest.mark.docker]

TASKS = """# notes chores

- [ ] ALPHA: append the word alpha to notes.txt
- [ ] BETA: append the word beta to notes.txt
- [ ] GAMMA: write gamma.txt
- [ ] DELTA: write delta.txt, after task 1
"""
RESOLVE = shell("printf 'line\\nalpha\\nbeta\\n' > notes.txt && git status --short")  # whichever merges second resolves


@pytest.fixture(scope="session")
def codex_image(agent_image) -> str:
    return agent_image("codex")


def night(repo: Path, tasks: Path, model: ScriptedResponses, parallel: int, **env: str) -> tuple[int, dict]:
    args = " ".join(shlex.quote(a) for a in codex_config_args(model.base_url, env_key="OPENAI_API_KEY"))
    done = subprocess.run(
        [*AUTODEV, "run", str(tasks), "--workspace", str(repo), "--agent", "codex", "--agent-args", args, "--network", "host",
         "--parallel", str(parallel), "--yes", "--json"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OPENAI_API_KEY": SECRET, **env},
    )  # fmt: skip
    assert done.stdout, done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout)


def git_out(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def test_tasks_run_at_once_and_merge_one_by_one_after_the_tests_pass(prefect_api, codex_image, tmp_path):
    repo = small_repository(tmp_path / "notes")
    (repo / "notes.txt").write_text("line\n")
    git_out(repo, "add", "notes.txt")
    git_out(repo, "-c", "user.name=me", "-c", "user.email=me@example.com", "commit", "-qm", "notes")
    tasks = tmp_path / "TASKS.md"
    tasks.write_text(TASKS)
    routes = {
        "ALPHA": [shell("echo alpha >> notes.txt"), message("Appended alpha."), RESOLVE, message("Resolved.")],
        "BETA": [shell("sleep 3; echo beta >> notes.txt"), message("Appended beta."), RESOLVE, message("Resolved.")],
        "GAMMA": [silent()],
        "DELTA": [shell("git log --format=%s -4 && echo delta > delta.txt"), message("Wrote delta.txt.")],
    }
    with ScriptedResponses([], routes=routes) as model:
        code, report = night(repo, tasks, model, 4, AUTODEV_STALL_TIMEOUT_S="8", AUTODEV_DECISION_TIMEOUT_S="1")
    assert code == 3, report  # a task waits for a person
    outcomes = {t["task"].split(":")[0]: (t["status"], t["merged"]) for t in report["tasks"]}
    assert outcomes == {"ALPHA": ("succeeded", True), "BETA": ("succeeded", True), "GAMMA": ("blocked", False),
                        "DELTA": ("succeeded", True)}  # fmt: skip
    gamma = next(t for t in report["tasks"] if t["task"].startswith("GAMMA"))
    assert "stalled" in gamma["reason"] and gamma["branch"].endswith("-task-3")
    branch = report["repository"]["branch"]
    assert git_out(repo, "show", f"{branch}:notes.txt") == "line\nalpha\nbeta\n"  # the conflict, resolved by the agent
    assert git_out(repo, "show", f"{branch}:delta.txt") == "delta\n"
    merges = git_out(repo, "log", "--first-parent", "--format=%s", branch).splitlines()
    assert sorted(m for m in merges if m.startswith("autodev: merge")) == [f"autodev: merge {branch}-task-{n}" for n in (1, 2, 4)]
    # The conflict went back to the agent of the task that merged second, once.
    conflicted = [r for r in model.requests if "conflicts in: notes.txt" in r.body_text]
    assert conflicted and all(("ALPHA" in r.body_text) != ("BETA" in r.body_text) for r in conflicted)
    # Task 4 came after task 1 and started from its merge: its agent's `git log` shows it.
    delta_seen = next(r.body_text for r in model.requests if "DELTA" in r.body_text and "delta.txt" in r.body_text and "autodev: merge" in r.body_text)
    assert f"autodev: merge {branch}-task-1" in delta_seen
    assert git_out(repo, "status", "--short", "--branch") == "## main\n"  # the checkout untouched
    assert git_out(repo, "branch", "--list", f"{branch}-task-3").strip()  # the blocked task's branch is kept
    second_night_does_only_the_blocked_task(repo, tasks, report)


def second_night_does_only_the_blocked_task(repo: Path, tasks: Path, first: dict) -> None:
    routes = {"GAMMA": [shell("echo gamma > gamma.txt"), message("Wrote gamma.txt.")]}
    with ScriptedResponses([], routes=routes) as model:
        code, second = night(repo, tasks, model, 2)
    assert code == 0, second
    assert [(t["task"].split(":")[0], t["merged"]) for t in second["tasks"]] == [("GAMMA", True)]  # only what was left
    assert second["repository"]["continues"] == first["run_id"]
    assert git_out(repo, "show", f"{second['repository']['branch']}:notes.txt") == "line\nalpha\nbeta\n"  # on the first night's work


QUEUE = "project: queue\nmax_parallel: 3\nsteps:\n" + "".join(
    f"  - {{id: {t}, run: \"echo {t} > {t}.txt && git add {t}.txt && git -c user.name=t -c user.email=t@x commit -qm 'task {t}'\", worktree: w{t}}}\n"
    f"  - {{id: merge-{t}, run: 'sleep 3; test -f {t}.txt', merges: w{t}, depends_on: [{t}]}}\n"
    for t in ("a", "b")
)


def test_kill_9_during_the_merge_queue_then_resume_merges_each_task_once(prefect_api, docker_engine, tmp_path):
    from tests.test_cli import autodev, write
    from tests.test_recovery import recorded, wait_for_session

    repo = small_repository(tmp_path / "queue")
    proc = subprocess.Popen([*AUTODEV, "exec", str(write(tmp_path / "plan.yaml", QUEUE)), "--workspace", str(repo)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    run_id = wait_for_session().run_id
    deadline = time.monotonic() + 120
    while "autodev: merge" not in merges_in(repo):  # a merge is made, and its tests run: kill the orchestrator now
        assert time.monotonic() < deadline and proc.poll() is None, "no merge was made"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    resumed = autodev("resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    session, attempts = recorded(run_id)
    assert session.status == "succeeded"
    assert sorted(merges_in(repo).splitlines()) == ["autodev: merge main-wa", "autodev: merge main-wb"]  # each once
    interrupted = [a for a in attempts if "died during the merge" in (a.result.exit_reason or "")]
    assert len(interrupted) == 1 and "merged already" in next(
        a.result.output_tail for a in attempts if a.step_id == interrupted[0].step_id and a.result.status == "succeeded"
    )


def merges_in(repo: Path) -> str:
    return subprocess.run(["git", "-c", f"safe.directory={repo}", "log", "--merges", "--format=%s"], cwd=repo,
                          capture_output=True, text=True).stdout  # fmt: skip


RED_AFTER_MERGE = """project: red
steps:
  - id: a
    worktree: wa
    run: |
      if [ -f a.txt ]; then echo ok > ok.txt; git add ok.txt; else echo a > a.txt; git add a.txt; fi
      git -c user.name=t -c user.email=t@x commit -qm "task a"
  - {id: merge-a, run: "test -f ok.txt && echo tests pass", merges: wa, depends_on: [a], feedback_to: a}
"""


def test_tests_that_fail_after_a_merge_undo_it_and_send_the_task_back(prefect_api, docker_engine, tmp_path):
    import yaml

    from tests.helpers import exec_json
    from tests.test_recovery import recorded

    repo = small_repository(tmp_path / "red")
    done, report = exec_json(yaml.safe_load(RED_AFTER_MERGE), repo, dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    _, attempts = recorded(report["run_id"])
    first, second = [a.result for a in attempts if a.step_id == "merge-a"]
    assert first.status == "failed" and "the merge is undone, and the run branch is merged into main-wa" in first.output_tail
    assert second.status == "succeeded" and "tests pass" in second.output_tail
    assert merges_in(repo).splitlines() == ["autodev: merge main-wa"]  # the red merge left no trace on the run's branch
    assert (repo / "ok.txt").is_file() and (repo / "a.txt").is_file()
    from tests.test_gc import age, gc

    lane_logs = repo.parent / "red.lanes" / "wa" / ".autodev" / "logs" / report["run_id"]
    assert any(lane_logs.iterdir())
    age(report["run_id"], days=10)
    assert gc("--older-than", "7")["runs"] == 1 and not lane_logs.exists()  # the task's clone's logs go with the run


def conflicting_tasks(agent: str, image: str, env: dict[str, str], agent_args: str | None = None) -> dict:
    """Two tasks of a plan in worktrees of their own, each appending to notes.txt with `agent`,
    each merged after the tests: the second merge conflicts."""
    steps = []
    for n, word in ((1, "ALPHA"), (2, "BETA")):
        steps += [{"id": f"task-{n}", "kind": "agent", "instruction": f"{word}-TASK: append {word.lower()} to notes.txt",
                   "worktree": f"task-{n}", "env": env},
                  {"id": f"merge-{n}", "run": "python -m pytest -q -p no:cacheprovider", "merges": f"task-{n}",
                   "depends_on": [f"task-{n}"], "feedback_to": f"task-{n}"}]  # fmt: skip
    plan = {"project": f"{agent}-queue", "image": image, "network": "host", "agent": agent, "max_parallel": 2,
            "defaults": {"stall_timeout_s": 30, "max_stall_retries": 0}, "steps": steps}  # fmt: skip
    return plan | ({"agent_args": agent_args} if agent_args else {})


def notes_repository(path: Path) -> Path:
    repo = small_repository(path)
    (repo / "notes.txt").write_text("line\n")
    git_out(repo, "add", "notes.txt")
    git_out(repo, "-c", "user.name=me", "-c", "user.email=me@example.com", "commit", "-qm", "notes")
    return repo


def test_claude_code_resolves_the_conflict_the_merge_queue_sends_back(prefect_api, agent_image, tmp_path):
    from tests.helpers import exec_json
    from tests.scripted_anthropic import ScriptedAnthropic, text, tool_use

    def write(lines: str):
        return tool_use("Bash", {"command": f"printf '{lines}' > notes.txt"})

    resolve = [write("line\\nalpha\\nbeta\\n"), text("Resolved.")]
    routes = {"ALPHA-TASK": [write("line\\nalpha\\n"), text("Appended."), *resolve],
              "BETA-TASK": [write("line\\nbeta\\n"), text("Appended."), *resolve]}  # fmt: skip
    repo = notes_repository(tmp_path / "claude")
    with ScriptedAnthropic([], routes=routes) as model:
        plan = conflicting_tasks("claude", agent_image("claude"), {"ANTHROPIC_BASE_URL": model.base_url})
        done, report = exec_json(plan, repo, {**os.environ, "ANTHROPIC_API_KEY": SECRET})
    assert_both_merged_after_one_conflict(done, report, repo)


def test_aider_resolves_the_conflict_the_merge_queue_sends_back(prefect_api, agent_image, tmp_path):
    from tests.helpers import exec_json
    from tests.scripted_chat import ScriptedChat, reply, whole_file

    resolve = reply(whole_file("notes.txt", "line\nalpha\nbeta\n"))
    routes = {"ALPHA-TASK": [reply(whole_file("notes.txt", "line\nalpha\n")), resolve],
              "BETA-TASK": [reply(whole_file("notes.txt", "line\nbeta\n")), resolve]}  # fmt: skip
    repo = notes_repository(tmp_path / "aider")
    with ScriptedChat([], routes=routes) as model:
        args = f"--model openai/gpt-4o-mini --openai-api-base {model.base_url}"
        plan = conflicting_tasks("aider", agent_image("aider"), {}, agent_args=args)
        done, report = exec_json(plan, repo, {**os.environ, "OPENAI_API_KEY": SECRET})
    assert_both_merged_after_one_conflict(done, report, repo)


def assert_both_merged_after_one_conflict(done: subprocess.CompletedProcess, report: dict, repo: Path) -> None:
    assert done.returncode == 0, done.stderr[-3000:]
    steps = {s["id"]: s for s in report["steps"]}
    assert sorted(steps[m]["attempts"] for m in ("merge-1", "merge-2")) == [1, 2]  # the second to merge conflicted once
    assert (repo / "notes.txt").read_text() == "line\nalpha\nbeta\n"
    merges = merges_in(repo).splitlines()
    assert sorted(m for m in merges if m.startswith("autodev: merge")) == ["autodev: merge main-task-1", "autodev: merge main-task-2"]
    assert any(m.startswith("autodev: task-") for m in merges)  # the agent's round that resolved the conflict finished a merge
