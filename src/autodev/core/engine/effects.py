"""What the run engine answers, as typed data: the attempts it starts and the effects of each
input, which the loop carries out through the recorder (store, log, events) and the executor
(start). These are answers inside one process, never serialized: an attempt's environment
holds its secrets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from autodev.core.commands import StepAttempt
from autodev.core.events import RunEvent
from autodev.core.models import AgentName, Plan, RunStatus, Step, StepDefaults, StepStatus
from autodev.core.redact import Redactor
from autodev.core.session import LLMCall


@dataclass(frozen=True)
class Policy:
    """The settings the engine's decisions depend on."""

    breaker_threshold: int = 3
    stall_timeout_s: float | None = None  # AUTODEV_STALL_TIMEOUT_S: for every step without its own
    has_model: bool = False  # a model is configured, so the built-in agent can work
    confidence_drop: float = 0.2  # a drop this large in the advice's confidence is announced
    limit_wait_max_s: float = 6 * 3600  # AUTODEV_LIMIT_WAIT_MAX_S: the longest a step waits for its provider's limit


@dataclass(frozen=True)
class Note:
    """A line for the run's log."""

    level: Literal["info", "warning", "error"]
    text: str


@dataclass(frozen=True)
class AttemptSpec:
    """One attempt of one step, as the engine starts it: all an executor needs to run and judge it."""

    step: Step
    attempt: int
    queue_id: str
    limits: StepDefaults  # the step's clocks and budgets, AUTODEV_STALL_TIMEOUT_S applied
    command: str | None  # the shell command (a command step, an agent CLI); None: the built-in agent
    evidence: str | None  # the failed check that sent the run back to this agent step
    redactor: Redactor  # the step's secrets, masked in whatever is stored or shown
    env: dict[str, str] = field(default_factory=dict)  # its environment, secrets included: never stored
    agent_stream: AgentName | None = None  # the agent CLI's JSON event stream to read (a preset with one)
    baseline_output: str = ""  # what its baseline step printed: failures seen there too are not its own
    todo_files: tuple[str, ...] = ()  # what the built-in agent edits when the step names no files
    kept_home: tuple[str, ...] = ()  # folders under HOME kept in the workspace (an agent CLI's sessions)


@dataclass
class Effects:
    """What the engine decided in answer to one input, for the loop to carry out."""

    attempts: list[StepAttempt] = field(default_factory=list)  # stored with step_states and the run's document
    step_states: dict[str, StepStatus] = field(default_factory=dict)
    started: list[AttemptSpec] = field(default_factory=list)
    events: list[RunEvent] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    model_calls: list[LLMCall] = field(default_factory=list)  # what the run's model calls cost
    status: RunStatus | None = None  # the run's new status, when it changes
    plan: Plan | None = None  # a decision replaced the run's plan (a command edited by a person)
    advice: Literal["due", "forced"] | None = None  # forced: make the advice in full now
    loop_status: str | None = None  # what the loop did, for the heartbeat

    def merge(self, later: Effects) -> Effects:
        """Fold the effects of a later input into these; returns self."""
        self.attempts += later.attempts
        self.step_states.update(later.step_states)
        self.started += later.started
        self.events += later.events
        self.notes += later.notes
        self.model_calls += later.model_calls
        self.status = later.status or self.status
        self.plan = later.plan or self.plan
        self.advice = "forced" if "forced" in (self.advice, later.advice) else later.advice or self.advice
        self.loop_status = later.loop_status or self.loop_status
        return self
