"""What is left of a task list: the backlog an earlier run on the same document and repository
hands to the next one.

A task counts as done when a run did it and its work can still be built on: the run's branch is
in the repository (merged into the checkout's HEAD, or not yet, when the next run starts from
that branch). Done tasks are carried from run to run, so a third night knows what the first did.
A task that blocked or failed is done again, with the note a person left on it when they decided.
"""

from __future__ import annotations

from autodev.core.models import RepositoryReport, TaskReport
from autodev.core.repository import Backlog
from autodev.core.session import SessionRecord


def backlog_after(previous: SessionRecord, tasks: list[TaskReport], branch_exists: bool, merged: bool) -> Backlog:
    """What the run `previous` (its tasks' outcomes `tasks`) leaves to the next run: its branch
    to start from (none when the checkout's HEAD has it merged already), the tasks done on it,
    and the notes people left on the others. A branch that is gone takes its work with it."""
    repository = previous.metadata.repository
    assert repository is not None, previous.run_id
    notes = _notes(previous, tasks)
    if not branch_exists:
        return Backlog(previous_run=previous.run_id, notes=notes)
    done = [*repository.carried, *(t.task for t in tasks if t.status == "succeeded" and t.task not in repository.carried)]
    return Backlog(previous_run=previous.run_id, start=None if merged else repository.branch, done=done, notes=notes)


def _notes(previous: SessionRecord, tasks: list[TaskReport]) -> dict[str, str]:
    """The newest note a person left on each task that did not succeed."""
    task_of = {step_id: t.task for t in tasks if t.status != "succeeded" for step_id in t.steps}
    notes: dict[str, str] = {}
    for intervention in previous.metadata.interventions:
        if intervention.note and intervention.step_id in task_of:
            notes[task_of[intervention.step_id]] = intervention.note
    return notes


def carried(repository: RepositoryReport, backlog: Backlog) -> RepositoryReport:
    """The run's branch report, with what it goes on from."""
    return repository.model_copy(update={"carried": backlog.done, "continues": backlog.previous_run})
