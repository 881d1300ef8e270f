"""Tasks in parallel, in milliseconds: the plan that gives each task a worktree and a merge step,
the merge steps run one at a time in the order their tasks finished, a merge that fails going
back to its own task's agent with rounds of its own, and a merge a dead orchestrator left being
run again rather than taken as it ended. The merges themselves, in git, are in
tests/test_git_merge.py; a whole parallel run with real Codex in tests/test_parallel.py."""

from __future__ import annotations

import pytest

from autodev.core.engine.inputs import Restore
from autodev.core.errors import BadInput
from autodev.core.events import FeedbackRound
from autodev.core.lanes import NO_TESTS, in_lanes
from autodev.core.models import utcnow
from autodev.core.plan import parse_plan
from autodev.core.repository import RepoMap, repository_plan
from autodev.core.scaffold import parse_requirements
from autodev.core.session import LeftAttempt
from autodev.testing import Scripted, scripted_run

TASKS = "# Work\n\n- [ ] add a schema\n- [ ] fix typos\n- [ ] migrate the data, after task 1\n"


def test_each_task_gets_a_worktree_and_a_merge_step_and_what_waited_for_it_waits_for_its_merge():
    plan = repository_plan(parse_requirements(TASKS), RepoMap(files=["app.py"], file_count=1, test_command="pytest -q"))
    lanes = in_lanes(plan, "pytest -q", parallel=3)
    assert lanes.max_parallel == 3
    assert [(s.id, s.worktree, s.merges) for s in lanes.steps] == [
        ("baseline", None, None),
        ("task-1", "task-1", None), ("check-1", "task-1", None), ("merge-1", None, "task-1"),
        ("task-2", "task-2", None), ("check-2", "task-2", None), ("merge-2", None, "task-2"),
        ("task-3", "task-3", None), ("check-3", "task-3", None), ("merge-3", None, "task-3"),
    ]  # fmt: skip
    merge = lanes.step("merge-1")
    assert (merge.run, merge.depends_on, merge.feedback_to, merge.baseline, merge.task) == (
        "pytest -q", ["check-1"], "task-1", "baseline", "add a schema",
    )  # the tests after the merge, judged against the baseline, a failure back to the task's agent
    assert lanes.step("task-3").depends_on == ["baseline", "merge-1"]  # "after task 1": after its merge


def test_a_repository_with_no_tests_merges_and_shows_the_merge_and_a_plan_with_no_task_only_gets_its_limit():
    plan = repository_plan(parse_requirements(TASKS), RepoMap(files=["app.py"], file_count=1))
    lanes = in_lanes(plan, None, parallel=2)
    assert lanes.step("merge-1").run == NO_TESTS and lanes.step("merge-1").depends_on == ["task-1"]
    plain = parse_plan("project: p\nsteps:\n  - {id: a, run: 'true'}\n  - {id: b, run: 'true'}\n")
    assert in_lanes(plain, "pytest", parallel=4) == plain.model_copy(update={"max_parallel": 4})


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ("  - {id: m, run: pytest, merges: nowhere}", "no step runs in worktree 'nowhere'"),
        ("  - {id: a, run: 'true', worktree: w}\n  - {id: m, run: pytest, merges: w}", "must come after every step of worktree 'w' (add a"),
        ("  - {id: a, run: 'true', worktree: w}\n  - {id: m, kind: agent, instruction: x, merges: w, depends_on: [a]}",
         "`merges` belongs to a command step"),
        ("  - {id: a, run: 'true', worktree: w}\n  - {id: m, run: pytest, merges: w, worktree: w, depends_on: [a]}",
         "runs in the run's workspace: leave out `worktree`"),
    ],
)  # fmt: skip
def test_a_merge_step_that_cannot_work_is_refused_naming_the_fix(steps, message):
    with pytest.raises(BadInput, match="merges|worktree") as refused:
        parse_plan(f"project: p\nsteps:\n{steps}\n")
    assert message in str(refused.value)


LANES = """
project: p
max_parallel: 4
agent_command: "agent {instruction}"
steps:
  - {id: task-1, kind: agent, instruction: one, worktree: task-1}
  - {id: merge-1, run: make test, merges: task-1, depends_on: [task-1], feedback_to: task-1}
  - {id: task-2, kind: agent, instruction: two, worktree: task-2}
  - {id: merge-2, run: make test, merges: task-2, depends_on: [task-2], feedback_to: task-2}
  - {id: task-3, kind: agent, instruction: three, worktree: task-3}
  - {id: merge-3, run: make test, merges: task-3, depends_on: [task-3], feedback_to: task-3}
"""


def test_merges_run_one_at_a_time_in_the_order_their_tasks_finished():
    newest_first = scripted_run(LANES, order=lambda running: running[-1]).go()  # task-3 ends first, then task-2...
    timeline = newest_first.executor.timeline
    assert [step for event, step, _ in timeline if event == "start" and step.startswith("merge")] == ["merge-3", "merge-2", "merge-1"]
    merging = 0
    for event, step, _ in timeline:  # never two merges at once
        merging += (1 if event == "start" else -1) if step.startswith("merge") else 0
        assert merging <= 1
    assert [step for event, step, _ in timeline[:3]] == ["task-1", "task-2", "task-3"]  # the tasks themselves at once


def test_a_failed_merge_goes_back_to_its_own_task_and_each_task_has_its_own_rounds():
    plan = LANES.replace("max_parallel: 4", "max_parallel: 4\nmax_feedback_rounds: 1")
    red = [Scripted("failed", 1, "merging autodev/p-task-1 into the run's branch conflicts in: notes.txt\n")]
    run = scripted_run(plan, {"make test": red * 2}).go()  # merge-1 and merge-2 fail once each, then pass
    rounds = run.events(FeedbackRound)
    assert sorted((r.step, r.to, r.round) for r in rounds) == [("merge-1", "task-1", 1), ("merge-2", "task-2", 1)]
    assert run.engine.progress.run_status == "succeeded" and run.engine.state.doc.rounds_to == {"task-1": 1, "task-2": 1}
    again = [s.command for s in run.executor.started if s.step.id == "task-1"][1]
    assert "conflicts in: notes.txt" in again  # the agent is told why


def test_a_merge_git_refused_on_this_machine_blocks_for_a_person_and_the_other_tasks_are_merged():
    full = Scripted("failed", 1, "git refused to merge the branch of task-1: No space left on device; nothing was merged\n",
                    host_refused=True)  # fmt: skip
    run = scripted_run(LANES, {"make test": [full]}).go()
    assert not run.events(FeedbackRound)  # the task's agent could not free the disk: no round spent on it
    assert {sid: state for sid, state in run.states().items() if sid.startswith("merge")} == {
        "merge-1": "blocked", "merge-2": "succeeded", "merge-3": "succeeded",
    }
    (blocker,) = run.engine.state.doc.blockers
    assert (blocker.step_id, blocker.kind) == ("merge-1", "host") and "disk is full" in blocker.suggested_action


def test_a_merge_a_dead_orchestrator_left_runs_again_even_when_its_tests_had_ended():
    left = [LeftAttempt(step_id="merge-1", attempt=1, exit_code=1, finished_at=utcnow(), output_tail="1 failed\n")]
    run = scripted_run(LANES).go(Restore(step_states={"task-1": "succeeded"}, left=left))
    merges = [(a.attempt, a.result.status, a.result.exit_reason or "") for a in run.attempts if a.step_id == "merge-1"]
    assert merges[0][:2] == (1, "failed") and "it runs again (a merge made already is not made twice)" in merges[0][2]
    assert merges[1][:2] == (2, "succeeded") and not run.events(FeedbackRound)  # no round spent on it


def test_a_merge_has_the_run_workspace_to_itself():
    plan = LANES + "  - {id: docs, run: make docs, depends_on: [task-1]}\n"  # a step of the run's workspace, ready with merge-1
    timeline = scripted_run(plan, order=lambda running: running[-1]).go().executor.timeline
    in_workspace: set[str] = set()
    for event, step, _ in timeline:
        if step.startswith("merge") or step == "docs":
            (in_workspace.add if event == "start" else in_workspace.discard)(step)
            assert len(in_workspace) <= 1, timeline  # never a merge beside another step in the workspace
    assert ("start", "docs", 1) in timeline


def test_the_default_number_of_tasks_at_once_follows_the_machine(monkeypatch):
    from autodev.core.settings import GIB, Settings, machine_parallel

    assert machine_parallel(cpus=1, memory_bytes=64 * GIB) == 1
    assert machine_parallel(cpus=2, memory_bytes=16 * GIB) == 2
    assert machine_parallel(cpus=16, memory_bytes=64 * GIB) == 4  # agents wait on their model: 4 is plenty
    assert machine_parallel(cpus=16, memory_bytes=5 * GIB) == 2  # 2 GiB for each task's sandbox
    assert machine_parallel(cpus=8, memory_bytes=GIB) == 1
    monkeypatch.delenv("AUTODEV_PARALLEL", raising=False)
    assert Settings().tasks_at_once() == machine_parallel()
    monkeypatch.setenv("AUTODEV_PARALLEL", "3")
    assert Settings().tasks_at_once() == 3
