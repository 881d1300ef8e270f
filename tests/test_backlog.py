"""What a task list has left after an earlier run, in milliseconds: the tasks done on a branch
that can still be built on are not done again, the others are, with a person's note."""

from __future__ import annotations

from autodev.core.backlog import backlog_after
from autodev.core.models import RepositoryReport, TaskReport, utcnow
from autodev.core.plan import parse_plan
from autodev.core.repository import Backlog, RepoMap, repository_plan
from autodev.core.scaffold import parse_requirements
from autodev.core.session import Intervention, SessionMetadata, SessionRecord

TASKS = "# Work\n\n- [ ] add a schema\n- [ ] migrate the data, after task 1\n- [ ] fix typos\n"


def earlier_run(carried: list[str]) -> SessionRecord:
    repository = RepositoryReport(repository="/src/app", branch="autodev/work-1", worktree="/w", base="b0", carried=carried)
    meta = SessionMetadata(repository=repository, interventions=[
        Intervention(step_id="task-3", action="skip", note="the typos are in docs/ only", ts=utcnow()),
    ])  # fmt: skip
    plan = parse_plan("project: work\nsteps:\n  - {id: task-2, kind: agent, instruction: x}\n  - {id: task-3, kind: agent, instruction: y}\n")
    return SessionRecord(run_id="run-1", project="work", status="blocked", workspace="/w", flow_run_id=None,
                         created_at=utcnow(), updated_at=utcnow(), plan=plan, metadata=meta)  # fmt: skip


OUTCOMES = [
    TaskReport(task="migrate the data, after task 1", status="succeeded", steps=["task-2"]),
    TaskReport(task="fix typos", status="blocked", steps=["task-3"]),
]


def test_what_is_done_on_a_branch_is_carried_and_the_rest_comes_with_its_note():
    backlog = backlog_after(earlier_run(carried=["add a schema"]), OUTCOMES, branch_exists=True, merged=False)
    assert backlog == Backlog(
        previous_run="run-1", start="autodev/work-1", done=["add a schema", "migrate the data, after task 1"],
        notes={"fix typos": "the typos are in docs/ only"},
    )  # fmt: skip
    merged = backlog_after(earlier_run(carried=[]), OUTCOMES, branch_exists=True, merged=True)
    assert merged.start is None and merged.done == ["migrate the data, after task 1"]  # the checkout's HEAD has it
    gone = backlog_after(earlier_run(carried=["add a schema"]), OUTCOMES, branch_exists=False, merged=False)
    assert gone.done == [] and gone.start is None  # its work went with its branch: everything again


def test_a_plan_does_only_whats_left_keeping_the_tasks_numbers_and_notes():
    backlog = Backlog(previous_run="run-1", start="autodev/work-1", done=["add a schema"], notes={"fix typos": "docs/ only"})
    plan = repository_plan(parse_requirements(TASKS), RepoMap(files=["app.py"], file_count=1, test_command="pytest -q", backlog=backlog))
    assert [s.id for s in plan.steps] == ["baseline", "task-2", "check-2", "task-3", "check-3"]
    assert plan.step("task-2").depends_on == ["baseline"]  # task 1 is done: nothing to wait for
    assert plan.step("task-3").instruction.endswith("A person's note on it: docs/ only")
