"""The task of a merge step: a task's branch merged into the run's branch, then the tests there.

Merged cleanly, the step runs its command (the tests) in the run's sandbox and is judged like any
check (its baseline's failures are not the task's). A conflict, or tests that fail, leave the
run's branch as it was before the merge, and the run's branch is merged into the task's instead
(conflicts marked), so the task's agent, which the failure goes back to, works on both. What git
refuses to do on this machine (a full disk, another git's lock) no agent can fix: such a result
is marked `host_refused`, and the step blocks for a person.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import git
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import State

from autodev.blocks.git_merge import Merge, hand_back, merge_lane, undo_merge, verified
from autodev.blocks.git_state import git_refusal
from autodev.core.commands import CommandResult
from autodev.core.models import utcnow
from autodev.tasks.run_command import Attempt, finish, run_captured


@task(task_run_name="{step_id}", cache_policy=NO_CACHE, persist_result=False)
def run_merge(step_id: str, attempt: Attempt) -> CommandResult | State:
    """Merge the step's worktree into the run's branch and run the tests (see the module's docstring)."""
    spec, logger, started = attempt.spec, get_run_logger(), utcnow()
    lane = spec.step.merges
    assert lane is not None and spec.command is not None
    try:
        merge = merge_lane(attempt.workspace, lane)
    except (git.GitCommandError, OSError) as exc:
        return finish(attempt, _refused(f"git refused to merge the branch of {lane}: {git_refusal(exc)}; nothing was merged", started), [])
    if merge.conflicts:
        logger.warning("merging %s conflicts in %s: back to its agent", merge.branch, ", ".join(merge.conflicts))
        return finish(attempt, _conflicted(attempt.workspace, lane, merge, started), [])
    if merge.markers:
        text = f"{merge.branch} still has conflict markers (<<<<<<< ... >>>>>>>) in: {', '.join(merge.markers)}; it was not merged: resolve them"
        return finish(attempt, _failed(text, started), [])
    done = f"merged {merge.branch} ({merge.tip[:8]})" + (f" as {merge.commit[:8]}" if merge.commit else " (merged already)")
    return run_captured(attempt, attempt.request(spec.command), preamble=f"[autodev] {done}; the tests on the merged code:\n",
                        settle=lambda result: _settled(attempt.workspace, lane, merge, result))  # fmt: skip


def _conflicted(workspace: Path, lane: str, merge: Merge, started_at: datetime) -> CommandResult:
    """The run's branch handed to the task with the conflicts marked, and its agent told so."""
    try:
        marked = hand_back(workspace, lane, "conflicts to resolve")
    except (git.GitCommandError, OSError) as exc:
        text = f"merging {merge.branch} conflicts in {', '.join(merge.conflicts)}, and git refused to mark them in the task's clone: {git_refusal(exc)}"
        return _refused(text, started_at)
    return _failed(
        f"merging {merge.branch} into the run branch conflicts in: {', '.join(merge.conflicts)}. The run branch "
        f"(the work merged since this task began) is now merged into this task branch, with the conflicts marked "
        f"(<<<<<<< ... >>>>>>>) in {', '.join(marked) or 'no file'}: resolve them, keeping what both sides meant, "
        "and keep the tests passing.", started_at,
    )  # fmt: skip


def _settled(workspace: Path, lane: str, merge: Merge, result: CommandResult) -> CommandResult:
    """Tests that failed after the merge: the merge undone, the run's branch handed to the task."""
    if result.status == "succeeded":
        verified(workspace)
        return result
    try:
        undo_merge(workspace, merge)
    except (git.GitCommandError, OSError) as exc:  # the run's branch holds a merge whose tests fail: a person's turn
        text = (f"\n[autodev] the tests failed on the merged code, and git refused to undo the merge: {git_refusal(exc)}; "
                f"the run branch still holds it: `git -C {workspace} reset --hard {merge.before[:12]}` undoes it\n")  # fmt: skip
        get_run_logger().error(text.strip())
        return result.model_copy(update={"output_tail": result.output_tail + text, "exit_reason": text.strip()[:500], "host_refused": True})
    try:
        marked = hand_back(workspace, lane, "the tests failed after merging it")
        note = f"the run branch is merged into {merge.branch}" + (f", conflicts marked in {', '.join(marked)}" if marked else "")
    except (git.GitCommandError, OSError) as exc:
        note = f"git refused to merge the run branch into {merge.branch}: {git_refusal(exc)}"
    text = f"\n[autodev] the tests failed on the merged code: the merge is undone, and {note}, for its agent to fix\n"
    get_run_logger().warning(text.strip())
    return result.model_copy(update={"output_tail": result.output_tail + text})


def _failed(text: str, started_at: datetime, host_refused: bool = False) -> CommandResult:
    return CommandResult(status="failed", exit_code=1, exit_reason=text[:500], started_at=started_at, finished_at=utcnow(),
                         output_tail=text + "\n", output_bytes=len(text) + 1, host_refused=host_refused)  # fmt: skip


def _refused(text: str, started_at: datetime) -> CommandResult:
    """A failure git made on this machine: for a person (see the module's docstring)."""
    return _failed(text, started_at, host_refused=True)
