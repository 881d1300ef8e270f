"""Next-step advice from the evidence: plain rules over the run's progress, blockers and git state.

`advise()` returns recommendations (each an action, the reason pointing into the evidence, and
a command where one applies), a confidence in [0, 1] and the evidence itself. Contradictory
evidence (a run that "succeeded" with merge conflicts in its tree, commits made while a step
failed) lowers the confidence. `changed()` says when people should hear about it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from autodev.core.egress import refusal_summary
from autodev.core.models import FAILED_STATUSES, Blocker, GitState, Insight, LLMUsage, Plan, Recommendation, Step


def advise(
    run_id: str,
    plan: Plan,
    statuses: Mapping[str, str | None],
    attempts: dict[str, int],
    blockers: list[Blocker],
    git: GitState,
    resumes: Mapping[str, int] | None = None,
    refused: Mapping[str, list[str]] | None = None,
) -> Insight:
    """The run's advice: the recommendations of the rules that apply, how sure they are, the
    evidence (`resumes`: how often each agent step continued its CLI's session; `refused`: the
    hosts the allow-list refused each step)."""
    progress = _Progress.of(plan, statuses)
    evidence = _evidence(plan, progress, attempts, blockers, git) | {"resumed": dict(resumes or {}), "refused": dict(refused or {})}
    found = _recommendations(run_id, plan, statuses, progress, blockers, git)
    found += [(_allow_or_avoid(plan.step(step_id), targets), 0.7) for step_id, targets in (refused or {}).items() if targets]
    confidence = _confidence(found, progress, evidence["retried"], git)
    return Insight(recommendations=[r for r, _ in found], confidence=confidence, evidence=evidence)


@dataclass(frozen=True)
class _Progress:
    """The plan's steps by where they stand."""

    done: list[str]
    failed: list[str]
    blocked: list[str]
    pending: list[str]

    @classmethod
    def of(cls, plan: Plan, statuses: Mapping[str, str | None]) -> _Progress:
        return cls(
            done=[s for s, st in statuses.items() if st == "succeeded"],
            failed=[s for s, st in statuses.items() if st in FAILED_STATUSES],
            blocked=[s for s, st in statuses.items() if st == "blocked"],
            pending=[s.id for s in plan.steps if statuses[s.id] is None],
        )

    @property
    def finished(self) -> bool:
        return not self.pending and not self.blocked

    @property
    def succeeded(self) -> bool:
        """Finished with no step failed."""
        return self.finished and not self.failed


def _evidence(
    plan: Plan, progress: _Progress, attempts: dict[str, int], blockers: list[Blocker], git: GitState
) -> dict[str, Any]:
    """What the advice rests on; the recommendations' reasons point into it."""
    return {
        "steps": {
            "total": len(plan.steps), "succeeded": len(progress.done),
            "failed": _named(progress.failed), "blocked": _named(progress.blocked), "pending": _named(progress.pending),
        },  # fmt: skip
        "retried": sorted(s for s, n in attempts.items() if n > 1),
        "latest_blocker": blockers[-1].model_dump(mode="json") if blockers else None,
        "git": git.model_dump(),
    }


def _recommendations(
    run_id: str, plan: Plan, statuses: Mapping[str, str | None], progress: _Progress, blockers: list[Blocker], git: GitState
) -> list[tuple[Recommendation, float]]:
    """Each rule that applies adds a recommendation and says how sure it is."""
    found: list[tuple[Recommendation, float]] = []
    if git.conflicts:
        found.append((_resolve_conflicts(git), 0.9))
    several = len(progress.blocked) > 1
    found += [(_decide_on_blocked(run_id, step_id, blockers, several=several), 0.8) for step_id in progress.blocked]
    found += [(_fix_failed(plan, step_id, statuses[step_id], blockers), 0.75) for step_id in progress.failed]
    if progress.succeeded and git.is_repo and (git.dirty_files or git.untracked_files) and not git.conflicts:
        found.append((_commit_changes(plan, progress.done, git), 0.7))
    if progress.succeeded and not found:
        found.append((_move_on(git), 0.85))
    if not found and progress.pending:
        found.append((_let_it_run(progress.pending), 0.6))
    return found


def _confidence(found: list[tuple[Recommendation, float]], progress: _Progress, retried: list[str], git: GitState) -> float:
    """The surest rule's confidence, lowered where the evidence disagrees with itself."""
    confidence = max((c for _, c in found), default=0.6)
    if progress.succeeded and git.conflicts:
        confidence -= 0.3  # "succeeded" with an unmerged tree
    if progress.failed and git.commits_since_start:
        confidence -= 0.2  # commits made while a step fails
    if retried and not progress.failed and not progress.blocked:
        confidence -= 0.1  # flaky: success only after retries
    return round(min(max(confidence, 0.05), 1.0), 2)


EVIDENCE_NAMES = 20  # step ids an evidence list names; the run's metadata holds the advice


def _named(step_ids: list[str]) -> list[str]:
    """The first EVIDENCE_NAMES ids, and how many more there are (a 10,000-step plan's pending list)."""
    more = len(step_ids) - EVIDENCE_NAMES
    return step_ids if more <= 0 else [*step_ids[:EVIDENCE_NAMES], f"... and {more} more"]


def _resolve_conflicts(git: GitState) -> Recommendation:
    return Recommendation(
        action=f"resolve the merge conflicts in {', '.join(git.conflicts[:5])}",
        reason=f"git reports {len(git.conflicts)} unmerged path(s) (evidence.git.conflicts)",
        command="git status && git diff --name-only --diff-filter=U",
    )


def _decide_on_blocked(run_id: str, step_id: str, blockers: list[Blocker], several: bool) -> Recommendation:
    b = next((b for b in reversed(blockers) if b.step_id == step_id and b.stops_the_run), None)
    step = f" --step {step_id}" if several else ""  # one decision per blocked step
    return Recommendation(
        action=b.suggested_action if b else f"decide on the blocked step {step_id}",
        reason=f"the run is blocked at {step_id}" + (f": {b.summary}" if b else "") + " (evidence.latest_blocker)",
        # A step a person does by hand is done by skipping it; anything else is retried.
        command=f"autodev resume {run_id}{step} --action {'skip' if b and b.kind == 'manual' else 'retry'}",
    )


def _fix_failed(plan: Plan, step_id: str, status: str | None, blockers: list[Blocker]) -> Recommendation:
    b = next((b for b in reversed(blockers) if b.step_id == step_id), None)
    return Recommendation(
        action=b.suggested_action if b else f"fix step {step_id}",
        reason=f"step {step_id} {status}" + (f": {b.summary}" if b else "") + " (evidence.steps.failed)",
        command=plan.step(step_id).run,  # None for agent steps: nothing to paste into a shell
    )


def _allow_or_avoid(step: Step, targets: list[str]) -> Recommendation:
    who = "the agent" if step.kind == "agent" else "the step"
    return Recommendation(
        action=f"step {step.id}: {refusal_summary(targets, who)}; if it should reach it, add it to the plan's `network: {{allow: [...]}}`",
        reason=f"the allow-list's proxy refused step {step.id} (evidence.refused)",
    )


def _commit_changes(plan: Plan, done: list[str], git: GitState) -> Recommendation:
    files = git.dirty_files + git.untracked_files
    return Recommendation(
        action=f"commit the run's changes ({len(files)} file(s) changed or new)",
        reason="every step succeeded and the tree has uncommitted changes (evidence.git.dirty_files, untracked_files)",
        command=f'git add -A && git commit -m "{plan.project}: steps {", ".join(done[:3])}{"..." if len(done) > 3 else ""}"',
    )


def _move_on(git: GitState) -> Recommendation:
    return Recommendation(
        action="review the result and move on to the next requirement",
        reason="every step succeeded" + (f"; changes since the start: {git.diff_stat}" if git.diff_stat else ""),
        command="git log --oneline -5 && git diff --stat HEAD~1" if git.commits_since_start else None,
    )


def _let_it_run(pending: list[str]) -> Recommendation:
    return Recommendation(
        action="nothing to do yet: let the run go on",
        reason=f"{len(pending)} step(s) still to run, next {pending[0]}; nothing failed (evidence.steps.pending)",
    )


def changed(previous: Insight | None, current: Insight, drop: float = 0.2) -> bool:
    """Notify when the advice itself changes or the confidence falls by `drop` or more."""
    if previous is None:
        return True
    if [r.action for r in previous.recommendations] != [r.action for r in current.recommendations]:
        return True
    return previous.confidence - current.confidence >= drop - 1e-9


class Advice(BaseModel):
    """The advice for a run, and what the model call that worded it cost (None: no call)."""

    insight: Insight
    usage: LLMUsage | None = None


class ModelAdvice(BaseModel):
    """What a model may change in the rules' advice: the order and the wording, nothing else."""

    order: list[int] = Field(description="indexes of the given recommendations, most important first; each once")
    actions: list[str] = Field(description="the reworded action of each recommendation, in the new order")


def refine(insight: Insight, advice: ModelAdvice) -> Insight | None:
    """The rules' advice reordered and reworded by a model, or None when the model's answer does
    not fit (unknown or repeated indexes, missing or empty actions). Reasons, commands and the
    confidence stay the rules' own: a model never makes the advice surer."""
    n = len(insight.recommendations)
    if sorted(advice.order) != list(range(n)) or len(advice.actions) != n or any(not a.strip() for a in advice.actions):
        return None
    recs = [
        insight.recommendations[i].model_copy(update={"action": action.strip()[:300]})
        for i, action in zip(advice.order, advice.actions, strict=False)
    ]
    return insight.model_copy(update={"recommendations": recs})


REFINE_PROMPT = (
    "You help a person supervising an unattended software build. Below are recommendations that "
    "rules derived from the evidence. Reorder them by importance and reword each action so it is "
    "short, concrete and imperative. Do not add, drop or merge recommendations and do not invent "
    'facts. Answer with JSON only: {"order": [indexes], "actions": [reworded actions in that order]}.'
)
