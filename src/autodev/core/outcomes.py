"""What the run engine (`src/autodev/core/run_engine.py`) answers, as typed data: the rules it follows,
the attempts it dispatches, and the outcome of each decision, which the recorder
(`src/autodev/flows/recorder.py`) carries out. These are answers inside one process, never serialized."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from autodev.core.events import RunEvent
from autodev.core.models import AgentName, Plan, RunStatus, Step, StepAttempt, StepDefaults, StepStatus
from autodev.core.redact import Redactor
from autodev.core.session import LLMCall, MetadataChanges, QueueEntry


@dataclass(frozen=True)
class Rules:
    """The settings the engine's decisions depend on."""

    breaker_threshold: int = 3
    stall_timeout_s: float | None = None  # AUTODEV_STALL_TIMEOUT_S: for every step without its own
    has_model: bool = False  # a model is configured, so the built-in agent can work


@dataclass(frozen=True)
class Note:
    """A line for the run's log."""

    level: Literal["info", "warning", "error"]
    text: str


@dataclass(frozen=True)
class Dispatch:
    """One attempt of one step to start."""

    step: Step
    entry: QueueEntry
    limits: StepDefaults  # the step's clocks and budgets, AUTODEV_STALL_TIMEOUT_S applied
    command: str | None  # the shell command (a command step, an agent CLI); None: the built-in agent
    evidence: str | None  # the failed check that sent the run back to this agent step
    redactor: Redactor  # the step's secrets, masked in whatever is stored or shown
    env: dict[str, str] = field(default_factory=dict)  # its environment, secrets included: never stored
    agent_stream: AgentName | None = None  # the agent CLI's JSON event stream to read (a preset with one)

    @property
    def attempt(self) -> int:
        return self.entry.attempt

    @property
    def log_name(self) -> str:
        return f"{self.step.id}.{self.entry.attempt}.log"


@dataclass
class Outcome:
    """What the engine decided, for the recorder to carry out (and the loop to start)."""

    attempt: StepAttempt | None = None  # stored together with step_states, in one transaction
    step_states: dict[str, StepStatus] = field(default_factory=dict)
    changes: MetadataChanges = field(default_factory=MetadataChanges)
    events: list[RunEvent] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    started: list[Dispatch] = field(default_factory=list)
    status: RunStatus | None = None  # the run's new status, when it changes
    plan: Plan | None = None  # a decision replaced the run's plan (a command edited by a person)
    advice: Literal["due", "forced"] | None = None  # forced: compute the advice in full now
    loop_status: str | None = None  # what the loop did, for the heartbeat
    model_calls: list[LLMCall] = field(default_factory=list)  # what the run's model calls cost

    @property
    def is_empty(self) -> bool:
        """Nothing to store, announce, log or start."""
        return self.changes.is_empty() and not (
            self.attempt or self.step_states or self.events or self.notes or self.started or self.status or self.plan
            or self.model_calls
        )

    def merge(self, later: Outcome) -> None:
        """Fold an outcome that carries no attempt into this one."""
        assert later.attempt is None, "an attempt is stored on its own"
        self.step_states.update(later.step_states)
        self.changes.merge(later.changes)
        self.events += later.events
        self.notes += later.notes
        self.started += later.started
        self.model_calls += later.model_calls
        self.status = later.status or self.status
        self.plan = later.plan or self.plan
        self.advice = "forced" if "forced" in (self.advice, later.advice) else later.advice or self.advice
        self.loop_status = later.loop_status or self.loop_status
