"""Tasks in parallel: a repository plan whose tasks each work in a worktree of their own, on a
branch of their own, and are merged into the run's branch one at a time, after the tests pass.

A pure transform of the plan (`in_lanes`): the steps of each task (those naming the same `task`)
get a `worktree`; after them comes a merge step (`merges`) that merges the task's branch into the
run's branch and runs the tests there, judged against the baseline, sending a conflict or red
tests back to the task's agent step. What waited for a task's steps ("after task 2") waits for
its merge instead, so it starts from the merged work. The run's `max_parallel` bounds how many
steps run at once; the merge steps run one at a time (`core/engine/scheduling.py`).
"""

from __future__ import annotations

from autodev.core.models import Plan, Step
from autodev.core.plan import validate_plan

NO_TESTS = "git log -1 --oneline"  # what a merge step runs when the repository has no test command: it shows the merge


def in_lanes(plan: Plan, test_command: str | None, parallel: int) -> Plan:
    """`plan` with each task in a worktree of its own and a merge step after it, at most
    `parallel` steps at once (see the module's docstring). Steps with no task stay in the run's
    workspace; a plan with no task is returned with only its `max_parallel` set."""
    tasks = _tasks_of(plan)
    lane_of = {sid: _lane_name(steps) for steps in tasks.values() for sid in (s.id for s in steps)}
    merge_of = {lane: _merge_id(lane, plan) for lane in set(lane_of.values())}
    baseline = next((s.id for s in plan.steps if s.expect == "any" and s.run == test_command), None)
    steps: list[dict] = []
    for step in plan.steps:
        data = step.model_dump(exclude_unset=True)
        lane = lane_of.get(step.id)
        waits_for = [merge_of[lane_of[d]] if d in lane_of and lane_of[d] != lane else d for d in step.depends_on]
        data["depends_on"] = list(dict.fromkeys(waits_for))
        if lane is not None:
            data["worktree"] = lane
        steps.append(data)
        if lane is not None and step is tasks[step.task][-1]:  # type: ignore[index]
            steps.append(_merge_step(merge_of[lane], lane, tasks[step.task], test_command, baseline))  # type: ignore[index]
    data = plan.model_dump(exclude_unset=True) | {"steps": steps, "max_parallel": parallel}
    return validate_plan(data, f"the parallel plan for {plan.project}")


def _tasks_of(plan: Plan) -> dict[str, list[Step]]:
    """The steps of each task, in plan order, by task."""
    tasks: dict[str, list[Step]] = {}
    for step in plan.steps:
        if step.task is not None and step.merges is None:
            tasks.setdefault(step.task, []).append(step)
    return tasks


def _lane_name(steps: list[Step]) -> str:
    """A task's worktree is named after its first agent step (`task-3`), else its first step."""
    return next((s.id for s in steps if s.kind == "agent"), steps[0].id)


def _merge_id(lane: str, plan: Plan) -> str:
    """`merge-3` for the worktree `task-3`; a suffix when the plan has that id already."""
    base = f"merge-{lane.removeprefix('task-')}"
    taken = {s.id for s in plan.steps}
    return next(candidate for n in range(len(taken) + 1) if (candidate := base if n == 0 else f"{base}-{n}") not in taken)


def _merge_step(step_id: str, lane: str, steps: list[Step], test_command: str | None, baseline: str | None) -> dict:
    """The step that merges a task's worktree: after its last steps (those no other step of the
    task waits for), back to its last agent step when the merge conflicts or the tests turn red."""
    waited_for = {d for s in steps for d in s.depends_on}
    agents = [s.id for s in steps if s.kind == "agent"]
    merge = {"id": step_id, "run": test_command or NO_TESTS, "merges": lane, "task": steps[0].task,
             "depends_on": [s.id for s in steps if s.id not in waited_for]}  # fmt: skip
    if agents:
        merge["feedback_to"] = agents[-1]
    if baseline is not None and test_command is not None:
        merge["baseline"] = baseline
    return merge
