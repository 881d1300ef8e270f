"""What happens to a run, as the run engine hears of it: `RunEngine.handle(input) -> Effects`.

Each input is a small typed model. The loop (`autodev/core/engine/loop.py`) hands them over in
the order they happen; the engine answers each with the effects to carry out.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from autodev.core.commands import CommandResult, StepAttempt
from autodev.core.models import Insight, RepositoryReport
from autodev.core.session import Decision, LeftAttempt, LLMCall


class Begin(BaseModel):
    """The run starts: whatever is ready is started."""


class Restore(BaseModel):
    """A run recorded earlier goes on: its step states and attempts as stored, and the attempts
    its previous orchestrator started and never recorded (`left`: it died)."""

    step_states: dict[str, str]
    attempts: list[StepAttempt] = Field(default_factory=list)
    left: list[LeftAttempt] = Field(default_factory=list)


class AttemptEnded(BaseModel):
    """An attempt's end, judged as its step expects (`autodev/core/engine/judge.py`), with the
    model calls it made itself (the built-in agent's)."""

    step_id: str
    attempt: int
    result: CommandResult
    model_calls: list[LLMCall] = Field(default_factory=list)


class Wake(BaseModel):
    """A step's wait for its provider's limit is over: whatever is ready is started."""


class WaitForDecision(BaseModel):
    """Nothing runs and a step is blocked: the run waits for a person."""


class DecisionTaken(BaseModel):
    decision: Decision


class AdviceReady(BaseModel):
    """The next-step advice, made anew (`lines`: one per recommendation)."""

    insight: Insight
    lines: list[str]
    model_calls: list[LLMCall] = Field(default_factory=list)


class Beat(BaseModel):
    """The loop is alive: what it does, and when a running step last printed something."""

    loop_status: str
    last_output_at: datetime | None = None


class BranchEnded(BaseModel):
    """A run on a repository that exists: its branch as the run leaves it."""

    repository: RepositoryReport


class Finish(BaseModel):
    """No step can run any more: the run ends (or stays blocked)."""


RunInput = Begin | Restore | AttemptEnded | Wake | WaitForDecision | DecisionTaken | AdviceReady | Beat | BranchEnded | Finish
