"""The insights task: read the workspace's git state and the run's evidence, return next-step advice."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from autodev.blocks.git_state import read_git_state
from autodev.blocks.llm import LLM, LLMError
from autodev.core.insights import REFINE_PROMPT, Advice, ModelAdvice, advise, refine
from autodev.core.models import Blocker, Insight, Plan


@task(name="insights", task_run_name="insights", cache_policy=NO_CACHE, persist_result=False)
def compute_insight(
    run_id: str,
    plan: Plan,
    statuses: Mapping[str, str | None],
    attempts: dict[str, int],
    blockers: list[Blocker],
    workspace: str,
    start_head: str | None,
    llm: LLM | None = None,
    resumes: Mapping[str, int] | None = None,
    refused: Mapping[str, list[str]] | None = None,
) -> Advice:
    """Rules first (`resumes`, `refused`: the evidence the run's engine keeps); with a model
    configured, the model may reorder and reword the advice. If the
    model fails or answers garbage, the rules' advice stands and the evidence says why."""
    git = read_git_state(Path(workspace), start_head)
    insight = advise(run_id, plan, statuses, attempts, blockers, git, resumes, refused)
    if llm is None or not insight.recommendations:
        return Advice(insight=insight)
    listing = [{"index": i, "action": r.action, "reason": r.reason} for i, r in enumerate(insight.recommendations)]
    try:
        answer = llm.ask_json(REFINE_PROMPT, json.dumps({"recommendations": listing}), ModelAdvice)
    except LLMError as exc:
        return Advice(insight=_noted(insight, f"not used: {exc}"))
    refined = refine(insight, answer.value)
    if refined is None:
        return Advice(insight=_noted(insight, f"rejected the answer of {llm.model} (it changed the set of recommendations)"), usage=answer.usage)
    return Advice(insight=_noted(refined, f"reworded by {llm.model}"), usage=answer.usage)


def _noted(insight: Insight, note: str) -> Insight:
    """The insight with what became of the model's part in its evidence."""
    return insight.model_copy(update={"evidence": {**insight.evidence, "llm": note}})
