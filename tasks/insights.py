"""The insights task: read the workspace's git state and the run's evidence, return next-step advice."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from autodev.insights import advise
from autodev.models import Blocker, Insight, Plan
from blocks.git_state import read_git_state


@task(name="insights", task_run_name="insights", cache_policy=None, persist_result=False)
def compute_insight(
    run_id: str,
    plan: Plan,
    statuses: dict[str, str | None],
    attempts: dict[str, int],
    blockers: list[Blocker],
    workspace: str,
    start_head: str | None,
) -> Insight:
    git = read_git_state(Path(workspace), start_head)
    return advise(run_id, plan, statuses, attempts, blockers, git)
