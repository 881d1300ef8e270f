"""Budgets: what a plan and its steps may spend (model cost, tokens, time) before a person is
asked whether to go on.

The spend comes from the agents' own reports: the built-in agent's model calls and an agent
CLI's event stream (`agent:<step>` calls). A step whose budget is spent is not started again;
a run whose budget is spent starts nothing more. Either way the run blocks (kind `budget`) with
the figures, and a person's decision to go on (`retry`) grants one more budget's worth and
starts the wall clock again.
"""

from __future__ import annotations

from datetime import datetime

from autodev.core.models import Budget, Plan, Step
from autodev.core.session import LLMCall, Spend

RUN = "(run)"  # the key of the whole run's spend


class BudgetKeeper:
    def __init__(self, plan: Plan, spent: dict[str, Spend]):
        """`spent` is the run's record of it (`SessionMetadata.spent`), kept up to date here."""
        self.plan = plan
        self.spent = spent
        self.spent.setdefault(RUN, Spend())
        # Only a step with a budget keeps its own spend: the run's metadata document, written at
        # every step, would otherwise grow by an entry per step (10,000 on a 10,000-step plan).
        self.budgeted = {s.id for s in plan.steps if s.budget}

    def add(self, call: LLMCall) -> None:
        """Count an agent's model call against the run and, when it has a budget, its step."""
        step_id = call.purpose.removeprefix("agent:") if call.purpose.startswith("agent:") else None
        for key in (RUN, step_id if step_id in self.budgeted else None):
            if key is not None:
                spend = self.spent.setdefault(key, Spend())
                spend.usd += call.cost_usd
                spend.tokens += call.tokens

    def add_time(self, step_id: str, seconds: float) -> None:
        if step_id in self.budgeted:
            self.spent.setdefault(step_id, Spend()).seconds += seconds

    def over(self, step: Step, now: datetime, waiting_since: datetime | None = None) -> str | None:
        """Why `step` may not start (its own budget, or the run's, is spent), or None; `waiting_since`:
        since when steps have been waiting for a limit (no work, so not counted)."""
        if step.budget and (why := _spent(step.budget, self.spent.get(step.id), now, wall=False)):
            return f"step {step.id}'s budget is spent: {why}"
        waiting = (now - waiting_since).total_seconds() if waiting_since else 0.0
        if self.plan.budget and (why := _spent(self.plan.budget, self.spent[RUN], now, wall=True, waiting=waiting)):
            return f"the run's budget is spent: {why}"
        return None

    def add_wait(self, seconds: float) -> None:
        """Time the run waited for a provider's limit: not work, so not counted against `wall_s`."""
        self.spent[RUN].waited += seconds

    def grant(self, step_id: str, now: datetime) -> None:
        """A person said go on: one more budget's worth for the step and the run, the clock anew."""
        for key in (RUN, step_id):
            spend = self.spent.setdefault(key, Spend())
            spend.grants += 1
            spend.since, spend.waited = now, 0.0


def _spent(budget: Budget, spend: Spend | None, now: datetime, wall: bool, waiting: float = 0.0) -> str | None:
    if spend is None:
        return None
    n = spend.grants
    if budget.usd is not None and spend.usd >= budget.usd * n:
        return f"${spend.usd:.2f} of ${budget.usd * n:.2f}"
    if budget.tokens is not None and spend.tokens >= budget.tokens * n:
        return f"{spend.tokens:,} tokens of {budget.tokens * n:,}"
    if budget.wall_s is not None:
        seconds = (now - spend.since).total_seconds() - spend.waited - waiting if wall else spend.seconds
        if seconds >= budget.wall_s * (1 if wall else n):
            return f"{seconds:.0f}s of work of {budget.wall_s * (1 if wall else n):g}s"
    return None
