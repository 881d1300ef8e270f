"""autodev's events, one typed model each: what the loop and the watchdog emit, what the
notification automations read.

An event's name is its class's `name`; its payload is the model's fields. The resource every
event is about is the run's flow run (`prefect.flow-run.<id>`, with `autodev.run_id` and
`autodev.project`), so automations can follow a run; `src/autodev/flows/recorder.py` emits them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, Field

from autodev.core.models import Recommendation, RunStatus, StepStatus, TaskReport
from autodev.core.session import DecisionAction


class RunEvent(BaseModel):
    name: ClassVar[str]

    def payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class RunStarted(RunEvent):
    name = "autodev.run.started"
    steps: int
    workspace: str


class StepNotice(RunEvent):
    """What every event about one step's command says; the notification text is built from it."""

    step: str
    command: str
    exit_code: int | None
    status: StepStatus


class CommandFinished(StepNotice):
    name = "autodev.command.finished"
    duration_s: float


class CommandFailed(StepNotice):
    name = "autodev.command.failed"
    attempt: int
    summary: str
    suggested_action: str


class StepStalled(StepNotice):
    name = "autodev.step.stalled"
    attempt: int
    stalls: int  # stalls of this step so far (in this feedback round)
    summary: str
    suggested_action: str


class StepWaiting(StepNotice):
    """The provider's usage or rate limit stopped a step: it runs again at `until`; others go on."""

    name = "autodev.step.waiting"
    attempt: int
    until: str  # ISO time, UTC
    summary: str
    suggested_action: str


class RunBlocked(StepNotice):
    """The run stopped dispatching at a step and waits for a person."""

    name = "autodev.run.blocked"
    reason: str  # the blocker's kind: stall, breaker, manual, watchdog
    summary: str
    suggested_action: str
    evidence: list[str] = Field(default_factory=list)  # the output lines the diagnosis matched
    heartbeat_delay_s: float | None = None  # watchdog: how late the orchestrator's heartbeat was
    containers_removed: int | None = None  # watchdog: sandboxes removed (None: the engine was not reachable)


class BreakerTripped(RunBlocked):
    name = "autodev.breaker.tripped"
    threshold: int


class FeedbackRound(RunEvent):
    name = "autodev.feedback.round"
    step: str  # the check that failed
    to: str  # the agent step it sends the run back to
    round: int
    max_rounds: int
    exit_code: int | None
    rerun: list[str]


class RunResumed(RunEvent):
    name = "autodev.run.resumed"
    step_id: str
    action: DecisionAction
    command: str | None
    note: str


class InsightChanged(RunEvent):
    name = "autodev.insight.changed"
    summary: str
    suggested_action: str
    recommendations: list[Recommendation]
    confidence: float
    previous_confidence: float | None


class HeartbeatBeat(RunEvent):
    name = "autodev.heartbeat"
    loop_status: str
    running: list[str]


class RunFinished(RunEvent):
    name = "autodev.run.finished"
    status: RunStatus  # failed when the run crashed
    success_rate: float | None = None
    reason: str | None = None  # crashed: the run's process raised
    summary: str | None = None  # the morning report in a line: each task's outcome
    suggested_action: str | None = None  # what a task that needs a person needs, with its command
    tasks: list[TaskReport] = Field(default_factory=list)  # the morning report: per task, its outcome and figures
