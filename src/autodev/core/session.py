"""A run as the state store keeps it: the session record, its metadata document, and what one
write of a run holds.

The metadata is the seed's `agent_sessions.metadata`: the last command result, the newest 20
results, the phase, the blockers, the dispatch queue, the heartbeat and the advice. It is the
part of the run engine's state (`autodev/core/engine/state.py`) the store keeps; the recorder
(`autodev/flows/recorder.py`) writes it whole, with the answer's attempts, in one `RunWrite`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, model_validator

from autodev.core.commands import StepAttempt
from autodev.core.models import AgentName, Blocker, Insight, LLMUsage, Plan, RepositoryReport, RunStatus, StepStatus, utcnow

DecisionAction = Literal["retry", "skip", "abort"]


class LastCommandResult(BaseModel):
    text: str
    exit_code: int | None
    ts: datetime
    step_id: str | None = None


class QueueEntry(BaseModel):
    queue_id: str
    step_id: str
    attempt: int
    dispatched_at: datetime


class Decision(BaseModel):
    """A person's answer to a blocked run; the Prefect UI shows it as a form under the evidence."""

    action: DecisionAction = Field("retry", description="retry the blocked step, skip it and go on, or abort the run")
    command: str | None = Field(None, description="optional: retry with this command instead of the plan's")
    note: str = Field("", description="why; kept with the run as an intervention")
    step: str | None = Field(None, description="the blocked step this decision is about (default: the first one)")


class Intervention(BaseModel):
    """A decision as kept with the run: which step it was about, and when."""

    step_id: str
    action: DecisionAction
    command: str | None = None  # retry with this command instead of the plan's
    note: str = ""
    ts: datetime


class Heartbeat(BaseModel):
    ts: datetime
    loop_status: str


class Pause(BaseModel):
    """A point where the run waited for a person: a blocked step, or a plan to confirm."""

    kind: Literal["decision", "confirmation"]
    step_id: str | None = None
    ts: datetime


class RunOrigin(BaseModel):
    """Where a run's plan came from: a plan file, a model's decomposition, or a template's fallback."""

    source: Literal["plan", "model", "replay", "template"] = "plan"  # replay: stored model answers
    requirements: str | None = None  # the requirements document's path or name
    template: str | None = None
    template_reason: str | None = None  # why this template: named, the generic one, or the model's pick
    reason: str | None = None  # why the template's plan was used instead of a model's
    usage: list[LLMUsage] = Field(default_factory=list)  # model calls spent on the plan


class LLMCall(LLMUsage):
    """One model call a run made, as the state store keeps it."""

    purpose: str  # decompose, agent:<step>, insights


class RunEvaluation(BaseModel):
    """A run's figures (autodev.evaluation computes them)."""

    run_id: str
    project: str
    status: RunStatus
    plan_source: str  # plan file, model, or the template's fallback
    started_at: datetime
    total_s: float
    steps: int
    steps_succeeded: int
    success_rate: float
    step_seconds: dict[str, float]  # every attempt of the step, summed
    attempts: int
    retries: int  # attempts beyond each step's first
    stalls: int
    breaker_trips: int
    feedback_rounds: int
    pauses: int  # times the run waited for a person (blocked step, plan to confirm)
    decisions: int  # decisions people took (retry, skip, abort)
    models: list[str] = Field(default_factory=list)  # the litellm models the run asked (openai/replay: stored answers)
    model_calls: int
    model_tokens: int
    model_cost_usd: float


class Spend(BaseModel):
    """What a step (or the whole run) spent, against its budget (src/autodev/core/budget.py)."""

    usd: float = 0.0
    tokens: int = 0
    seconds: float = 0.0  # a step's attempts' time, in all
    waited: float = 0.0  # the run's seconds spent waiting for providers' limits (not counted as work)
    grants: int = 1  # budgets' worth allowed: 1, plus one per decision to go on
    since: datetime = Field(default_factory=utcnow)  # the wall clock's start


class LimitWait(BaseModel):
    """A step stopped by its provider's usage or rate limit, waiting until it resets (`core/limits.py`)."""

    until: datetime  # when the step runs again
    began: datetime  # when this wait began
    since: datetime  # when the limit first stopped it (the waits in a row count from here)
    provider: str  # its agent: steps of the same provider wait too; others go on
    line: str  # what the agent said


class CliSession(BaseModel):
    """An agent step's coding-agent CLI session (Codex's thread, Claude Code's session): the
    step's next round continues it (`core/engine/resumes.py`)."""

    agent: AgentName
    id: str
    why: str | None = None  # why its last round did not finish: what the round that continues it is told
    resumes: int = 0  # rounds that continued it
    resumed_in: int | None = None  # the attempt that continues it now


class SessionMetadata(BaseModel):
    """The `agent_sessions.metadata` document of one run."""

    last_command_result: LastCommandResult | None = None
    last_output_at: datetime | None = None
    command_history: list[LastCommandResult] = Field(default_factory=list)
    phase: str = "planned"
    blockers: list[Blocker] = Field(default_factory=list)
    queue: list[QueueEntry] = Field(default_factory=list)
    next_actions: Insight | None = None  # the seed's {recommendations, confidence, evidence}
    advice: list[str] = Field(default_factory=list)  # the same, one line per recommendation (`action  ->  command`)
    orchestrator_heartbeat: Heartbeat | None = None
    interventions: list[Intervention] = Field(default_factory=list)
    pauses: list[Pause] = Field(default_factory=list)
    feedback_rounds: int = 0  # times a failed check sent the run back to an agent step
    rounds_to: dict[str, int] = Field(default_factory=dict)  # those rounds by agent step (each has max_feedback_rounds)
    evidence: dict[str, str] = Field(default_factory=dict)  # agent step -> the failed check that sent the run back to it
    todo_files: list[str] | None = None  # files holding TODO markers when the run began (the built-in agent's default)
    origin: RunOrigin = Field(default_factory=RunOrigin)
    evaluation: RunEvaluation | None = None  # the run's figures at its end
    repository: RepositoryReport | None = None  # a run on a repository that exists: its branch and changes
    spent: dict[str, Spend] = Field(default_factory=dict)  # by step id, and "(run)" for the whole run
    waits: dict[str, LimitWait] = Field(default_factory=dict)  # steps waiting for their provider's limit to reset
    limit_since: dict[str, datetime] = Field(default_factory=dict)  # when a limit first stopped each step, in a row (kept across resumes)
    cli_sessions: dict[str, CliSession] = Field(default_factory=dict)  # agent step -> its CLI's session
    refused: dict[str, list[str]] = Field(default_factory=dict)  # step -> the hosts the allow-list refused it

    HISTORY_LIMIT: ClassVar[int] = 20

    @model_validator(mode="before")
    @classmethod
    def _earlier_layout(cls, data: Any) -> Any:
        """Runs stored before schema v7 kept the advice as `insight` and its lines as `next_actions`."""
        if isinstance(data, dict) and isinstance(data.get("next_actions"), list):
            data = {**data, "advice": data["next_actions"], "next_actions": data.get("insight")}
            data.pop("insight", None)
        return data

    def record_result(self, entry: LastCommandResult) -> None:
        """Set the last result and keep the newest HISTORY_LIMIT results, dropping the oldest."""
        self.last_command_result = entry
        self.command_history.append(entry)
        del self.command_history[: -self.HISTORY_LIMIT]


class RunWrite(BaseModel):
    """One transaction's worth of what a run records: the one way a run is written. The
    document replaces the stored one whole (only the process that holds the run writes it)."""

    run_id: str
    metadata: SessionMetadata | None = None
    status: RunStatus | None = None
    plan: Plan | None = None  # the run's effective plan, when a decision replaced it
    flow_run_id: str | None = None  # set when another flow run continues the run
    attempts: list[StepAttempt] = Field(default_factory=list)
    step_states: dict[str, StepStatus] = Field(default_factory=dict)
    model_calls: list[LLMCall] = Field(default_factory=list)


class SessionRecord(BaseModel):
    run_id: str
    project: str
    status: RunStatus
    workspace: str
    flow_run_id: str | None
    created_at: datetime
    updated_at: datetime
    plan: Plan
    metadata: SessionMetadata
    owner: str | None = None  # the flow run that holds the run's lease, None when nobody runs it
    lease_until: datetime | None = None  # the owner's hold, renewed with every heartbeat


class LeftAttempt(BaseModel):
    """An attempt a run's previous orchestrator had started and never recorded (it died), as the
    sandbox and the workspace tell of it when the run is resumed."""

    step_id: str
    attempt: int
    started_at: datetime | None = None  # when it was dispatched, if the metadata's queue says
    exit_code: int | None = None  # from its exit status file: it finished after the orchestrator died
    finished_at: datetime | None = None
    still_running: bool = False  # it still ran when the run was resumed (it was killed then)
    output_tail: str = ""  # the end of its log, as far as the orchestrator wrote it
    output_head: str = ""  # its log's first lines (an agent CLI names its session there)
    log_path: str | None = None


class Lease(BaseModel):
    """A process's hold on a run: only its owner writes the run while the hold lasts, and every
    heartbeat renews it. An orchestrator that died stops renewing, so its hold runs out."""

    owner: str  # the flow run id of the process
    seconds: float  # how long each renewal holds


class StatusTotals(BaseModel):
    """The attempts that ended with one status, summed (the metrics exporter's rows)."""

    status: str
    count: int
    seconds: float
    breaker_trips: int
    per_bucket: list[int]  # attempts no longer than each duration bucket


class AttemptTotals(BaseModel):
    last_id: int  # the newest attempt counted: the next read starts after it
    by_status: list[StatusTotals]


class RunBeat(BaseModel):
    """A running run and when its session was last written (every heartbeat writes it)."""

    run_id: str
    project: str
    updated_at: datetime
