"""Next-step advice: git state changes change the advice; contradictions lower confidence."""

from __future__ import annotations

import git
import pytest

from autodev.blocks.git_state import read_git_state
from autodev.core.insights import advise, changed
from autodev.core.models import Blocker, GitState, utcnow
from autodev.core.plan import parse_plan

PLAN = parse_plan("project: p\nsteps:\n  - {id: build, run: make}\n  - {id: test, run: pytest, depends_on: [build]}\n")
DONE = {"build": "succeeded", "test": "succeeded"}


def repo_state(**kw) -> GitState:
    return GitState(is_repo=True, branch="main", head="abc", **kw)


def actions(insight) -> list[str]:
    return [r.action for r in insight.recommendations]


def test_uncommitted_changes_after_success_recommend_a_commit():
    insight = advise("r", PLAN, DONE, {"build": 1, "test": 1}, [], repo_state(dirty_files=["app.py"], untracked_files=["new.py"]))
    (rec,) = insight.recommendations
    assert rec.action.startswith("commit the run's changes (2 file(s)") and rec.command.startswith("git add -A && git commit")
    assert "evidence.git.dirty_files" in rec.reason and insight.evidence["git"]["dirty_files"] == ["app.py"]


def test_a_new_commit_changes_the_advice_to_review():
    insight = advise("r", PLAN, DONE, {"build": 1, "test": 1}, [], repo_state(commits_since_start=1, diff_stat="1 file changed"))
    assert actions(insight) == ["review the result and move on to the next requirement"]
    assert "1 file changed" in insight.recommendations[0].reason and insight.confidence == 0.85


def test_conflicts_come_first_and_contradict_a_success():
    clean = advise("r", PLAN, DONE, {"build": 1, "test": 1}, [], repo_state())
    conflicted = advise("r", PLAN, DONE, {"build": 1, "test": 1}, [], repo_state(conflicts=["app.py"]))
    assert conflicted.recommendations[0].action == "resolve the merge conflicts in app.py"
    assert conflicted.confidence < clean.confidence  # "succeeded" with an unmerged tree


def test_a_failed_step_gets_its_suggested_action_and_commits_on_failure_lower_confidence():
    blocker = Blocker(step_id="test", command="pytest", exit_code=1, summary="failed with exit code 1: 2 failed",
                      suggested_action="fix the failing tests: tests/test_a.py::test_x", ts=utcnow())
    statuses = {"build": "succeeded", "test": "failed"}
    plain = advise("r", PLAN, statuses, {"build": 1, "test": 1}, [blocker], repo_state())
    committed = advise("r", PLAN, statuses, {"build": 1, "test": 1}, [blocker], repo_state(commits_since_start=2))
    assert plain.recommendations[0].action == "fix the failing tests: tests/test_a.py::test_x"
    assert plain.recommendations[0].command == "pytest"
    assert committed.confidence < plain.confidence


def test_a_blocked_run_recommends_the_blockers_action_and_the_resume_command():
    blocker = Blocker(step_id="build", command="make", exit_code=137, summary="stalled", kind="stall",
                      suggested_action="check that it does not wait for input", ts=utcnow())
    insight = advise("run-1", PLAN, {"build": "blocked", "test": None}, {"build": 2, "test": 0}, [blocker], GitState())
    assert insight.recommendations[0].action == "check that it does not wait for input"
    assert insight.recommendations[0].command == "autodev resume run-1 --action retry"


def test_a_step_left_to_a_person_is_resumed_by_skipping_it():
    blocker = Blocker(step_id="build", command="agent: write it", exit_code=None, summary="no coding agent", kind="manual",
                      suggested_action="do it by hand", ts=utcnow())
    insight = advise("run-1", PLAN, {"build": "blocked", "test": None}, {"build": 0, "test": 0}, [blocker], GitState())
    assert insight.recommendations[0].command == "autodev resume run-1 --action skip"


def test_each_blocked_step_gets_its_own_decision_in_the_advice():
    plan = parse_plan("project: p\nsteps:\n  - {id: a, run: x}\n  - {id: b, kind: agent, instruction: do it}\n")
    blockers = [
        Blocker(step_id="a", command="x", exit_code=137, summary="stalled", kind="stall", suggested_action="check input", ts=utcnow()),
        Blocker(step_id="b", command="agent: do it", exit_code=None, summary="no agent", kind="manual", suggested_action="by hand", ts=utcnow()),
    ]
    insight = advise("r", plan, {"a": "blocked", "b": "blocked"}, {"a": 1, "b": 0}, blockers, GitState())
    assert [r.command for r in insight.recommendations] == [
        "autodev resume r --step a --action retry", "autodev resume r --step b --action skip",
    ]


def test_notify_only_on_new_advice_or_a_confidence_drop():
    base = advise("r", PLAN, DONE, {"build": 1, "test": 1}, [], repo_state())
    assert changed(None, base)
    assert not changed(base, advise("r", PLAN, DONE, {"build": 1, "test": 1}, [], repo_state()))
    lower = base.model_copy(update={"confidence": base.confidence - 0.25})
    assert changed(base, lower)
    assert not changed(base, base.model_copy(update={"confidence": base.confidence - 0.1}))
    assert changed(base, advise("r", PLAN, DONE, {"build": 1, "test": 1}, [], repo_state(dirty_files=["x"])))


@pytest.fixture
def repo(tmp_path):
    r = git.Repo.init(tmp_path, initial_branch="main")
    with r.config_writer() as c:
        c.set_value("user", "name", "t").set_value("user", "email", "t@localhost")
    (tmp_path / "app.py").write_text("x = 1\n")
    r.index.add(["app.py"])
    r.index.commit("start")
    return r


def test_git_state_follows_the_real_repository(repo, tmp_path):
    start = repo.head.commit.hexsha
    assert read_git_state(tmp_path, start) == GitState(is_repo=True, branch="main", head=start)
    (tmp_path / "app.py").write_text("x = 2\n")
    (tmp_path / "new.py").write_text("y = 1\n")
    state = read_git_state(tmp_path, start)
    assert state.dirty_files == ["app.py"] and state.untracked_files == ["new.py"]
    repo.index.add(["app.py", "new.py"])
    repo.index.commit("work")
    state = read_git_state(tmp_path, start)
    assert state.commits_since_start == 1 and state.dirty_files == [] and "2 files changed" in state.diff_stat


def test_git_state_sees_merge_conflicts(repo, tmp_path):
    repo.git.checkout("-b", "other")
    (tmp_path / "app.py").write_text("x = 'other'\n")
    repo.git.commit("-am", "other")
    repo.git.checkout("main")
    (tmp_path / "app.py").write_text("x = 'main'\n")
    repo.git.commit("-am", "main")
    with pytest.raises(git.GitCommandError):
        repo.git.merge("other")
    assert read_git_state(tmp_path).conflicts == ["app.py"]


def test_not_a_repository(tmp_path):
    assert read_git_state(tmp_path) == GitState()


@pytest.mark.slow
@pytest.mark.docker
def test_next_actions_follow_every_iteration_between_full_computations(prefect_api, docker_engine, tmp_path, monkeypatch):
    """With the full computation throttled for an hour, a failed step still shows in
    next_actions before the next step starts; that step reads them from the state store."""
    from tests.helpers import run

    monkeypatch.setenv("AUTODEV_HEARTBEAT_INTERVAL_S", "3600")
    (tmp_path / "read_advice.py").write_text(
        "import json, sqlite3\n"
        "row = sqlite3.connect('autodev.db').execute('SELECT metadata FROM agent_sessions').fetchone()\n"
        "print(json.loads(row[0])['advice'])\n"
    )
    plan = (
        "project: advice\nsteps:\n  - {id: first, run: 'true'}\n  - {id: broken, run: 'exit 3'}\n"
        "  - {id: reader, run: 'python3 read_advice.py'}\n"
    )
    _, report = run(plan, tmp_path)  # the workspace holds the state store (tests use tmp_path/autodev.db)
    reader = next(s for s in report.steps if s.id == "reader")
    assert reader.status == "succeeded", reader.output_tail
    assert "broken.1.log" in reader.output_tail and "nothing to do yet" not in reader.output_tail, reader.output_tail


def test_reading_the_git_state_never_takes_the_index_lock(repo, tmp_path):
    """The advice reads the git state while a step may commit in the sandbox: a `git status`
    that refreshed the index would hold index.lock, and the step's `git commit` would fail."""
    import os

    index = tmp_path / ".git" / "index"
    os.utime(tmp_path / "app.py", (1_000_000_000, 1_000_000_000))  # the same content, stale stat data
    before = index.read_bytes(), index.stat().st_mtime_ns
    state = read_git_state(tmp_path, repo.head.commit.hexsha)
    assert state.dirty_files == [] and state.untracked_files == []
    assert (index.read_bytes(), index.stat().st_mtime_ns) == before  # the index was not rewritten


def test_a_rounds_commit_waits_for_a_git_process_holding_the_index_lock(repo, tmp_path, monkeypatch):
    """A step's git in the sandbox may hold index.lock when the host commits an agent round:
    the commit waits for it to go, and when it stays, says so instead of crashing the run."""
    import threading

    from autodev.blocks import git_state

    (tmp_path / "app.py").write_text("print('changed')\n")
    lock = tmp_path / ".git" / "index.lock"
    lock.touch()
    threading.Timer(0.5, lock.unlink).start()
    sha = git_state.commit_round(tmp_path, "round 1")
    assert sha and repo.head.commit.hexsha == sha and "app.py" in repo.head.commit.stats.files

    (tmp_path / "app.py").write_text("print('changed again')\n")
    lock.touch()
    monkeypatch.setattr(git_state, "LOCK_WAIT_S", 0.3)
    with pytest.raises(git_state.RoundNotCommitted, match="index.lock"):
        git_state.commit_round(tmp_path, "round 2")
    assert repo.head.commit.hexsha == sha and repo.is_dirty()  # nothing lost: the change waits in the workspace
