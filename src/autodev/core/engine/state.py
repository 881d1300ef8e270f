"""One run's state: everything the run engine knows of a run, in one serializable model.

`doc` is the part the state store keeps (`agent_sessions.metadata`: the last command result,
the command history, the phase, the blockers, the dispatch queue, the advice...). The rest is
the engine's own bookkeeping: each step's status and attempts, the stall counts, the failure
breaker, what each agent round changed. The engine (`autodev/core/engine/machine.py`) is the
only writer; the recorder writes `doc` as it stands, in one write per loop iteration.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from autodev.core.models import Plan, StepStatus
from autodev.core.session import QueueEntry, SessionMetadata


class Breaker(BaseModel):
    """The failure breaker: trips after `threshold` consecutive failures with the same
    fingerprint; a success resets it."""

    last: str | None = None
    count: int = 0

    def record(self, fingerprint: str | None, threshold: int) -> bool:
        """Record one result (None for a success); True when the breaker trips."""
        if fingerprint is None or fingerprint != self.last:
            self.last, self.count = fingerprint, (0 if fingerprint is None else 1)
        else:
            self.count += 1
        return fingerprint is not None and self.count >= threshold


class RunState(BaseModel):
    """Everything the engine knows of one run (see the module's docstring)."""

    run_id: str
    workspace: str
    doc: SessionMetadata = Field(default_factory=SessionMetadata)
    status: dict[str, StepStatus | None]  # each step's final status; None while it waits or runs
    attempts: dict[str, int]  # attempts started of each step
    round_start: dict[str, int]  # attempts a step had when its current round began (feedback, decision, resume)
    stalls: dict[str, int]  # stalled attempts of each step in its current round
    waived: set[str] = Field(default_factory=set)  # skipped by a person: done, for what depends on them
    stale: set[str] = Field(default_factory=set)  # running steps whose result a feedback round made outdated
    breaker: Breaker = Field(default_factory=Breaker)
    baseline_outputs: dict[str, str] = Field(default_factory=dict)  # the last output of each baseline step
    round_digests: dict[str, list[str]] = Field(default_factory=dict)  # what each agent step's rounds changed
    sandbox_lost: bool = False  # a result said the sandbox went away: nothing starts until a person decides
    waiting_since: datetime | None = None  # since when some step has waited for a limit (waits that overlap count once)

    @classmethod
    def begin(cls, run_id: str, workspace: str, plan: Plan, doc: SessionMetadata | None = None) -> RunState:
        """A run with no step started yet (`doc`: its document as recorded so far)."""
        ids = [s.id for s in plan.steps]
        return cls(
            run_id=run_id, workspace=workspace, doc=doc or SessionMetadata(), status=dict.fromkeys(ids),
            attempts=dict.fromkeys(ids, 0), round_start=dict.fromkeys(ids, 0), stalls=dict.fromkeys(ids, 0),
        )  # fmt: skip

    @property
    def running(self) -> dict[str, QueueEntry]:
        """The attempts started and not ended, by step: the seed's dispatch queue."""
        return {entry.step_id: entry for entry in self.doc.queue}

    def dequeue(self, queue_id: str) -> None:
        self.doc.queue = [entry for entry in self.doc.queue if entry.queue_id != queue_id]

    def round_repeats(self, step_id: str, digest: str | None, changed_nothing: bool) -> bool:
        """Whether an agent round changed nothing, or only what an earlier round of the step
        changed: no success for the breaker, so a feedback loop going nowhere blocks."""
        seen = self.round_digests.setdefault(step_id, [])
        again = digest is not None and digest in seen
        if digest and not again:
            seen.append(digest)
        return digest == "" or changed_nothing or again
