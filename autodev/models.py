"""Typed data shared by every layer: plans, command requests/results, session metadata, reports.

Defined once here and reused by the CLI, the flows, the tasks and the blocks, so a plan read
from YAML, a result stored in the database and the `--json` output are the same objects.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

STEP_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

# Final statuses of the contract, plus the two a step has while its run is still going.
StepStatus = Literal["succeeded", "failed", "stalled", "timed_out", "skipped", "blocked", "pending", "running"]
RunStatus = Literal["running", "succeeded", "failed", "blocked"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class _Strict(BaseModel):
    """Plan files are written by people: an unknown or misspelt key is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


class StepDefaults(_Strict):
    stall_timeout_s: float = Field(300, gt=0, description="Kill a step that prints nothing for this long.")
    timeout_s: float = Field(1800, gt=0, description="Hard limit on one attempt of a step.")
    retries: int = Field(0, ge=0, le=10, description="Extra attempts after a failed or timed-out one.")
    max_stall_retries: int = Field(1, ge=0, le=10, description="Attempts after a stall before the run blocks.")


class Step(_Strict):
    id: str = Field(pattern=STEP_ID_PATTERN)
    run: str = Field(description="Shell command, run by /bin/sh -c in the sandbox's /workspace.")
    depends_on: list[str] = Field(default_factory=list)
    stall_timeout_s: float | None = Field(None, gt=0)
    timeout_s: float | None = Field(None, gt=0)
    retries: int | None = Field(None, ge=0, le=10)
    max_stall_retries: int | None = Field(None, ge=0, le=10)
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("run")
    @classmethod
    def _command_not_empty(cls, run: str) -> str:
        if not run.strip():
            raise ValueError("command is empty")
        return run


class Plan(_Strict):
    project: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    image: str | None = None
    network: bool = Field(False, description="Give the sandbox a network (off by default).")
    max_parallel: int = Field(1, ge=1, le=32, description="How many independent steps may run at once.")
    defaults: StepDefaults = Field(default_factory=StepDefaults)
    steps: list[Step] = Field(min_length=1)

    def step(self, step_id: str) -> Step:
        return next(s for s in self.steps if s.id == step_id)

    def limits_for(self, step: Step) -> StepDefaults:
        """A step's clocks and retry budgets: its own values over the plan's defaults."""
        own = {k: v for k, v in step.model_dump(include=set(StepDefaults.model_fields)).items() if v is not None}
        return self.defaults.model_copy(update=own)


class CommandRequest(BaseModel):
    """One command for a sandbox to run."""

    command: str
    timeout_s: float
    stall_timeout_s: float
    env: dict[str, str] = Field(default_factory=dict)
    log_path: str | None = Field(None, description="Host file that receives the full output.")


class CommandResult(BaseModel):
    """What happened to one command; the exit code comes from Docker or is None with a reason."""

    status: Literal["succeeded", "failed", "stalled", "timed_out"]
    exit_code: int | None
    exit_reason: str | None = None
    started_at: datetime
    finished_at: datetime
    output_bytes: int = 0
    output_tail: str = ""
    log_path: str | None = None

    @property
    def duration_s(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


class StepAttempt(BaseModel):
    """One attempt of one step, as kept in the results table."""

    run_id: str
    step_id: str
    attempt: int
    command: str
    result: CommandResult
    breaker_tripped: bool = False  # this attempt was the failure that tripped the breaker


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


class Blocker(BaseModel):
    """A failed command, and whether it stopped the run (kind `stall` or `breaker`)."""

    step_id: str
    command: str
    exit_code: int | None
    summary: str
    suggested_action: str = ""
    kind: Literal["failure", "stall", "breaker", "watchdog"] = "failure"
    ts: datetime


class Intervention(BaseModel):
    """A person's decision on a blocked run, from the Prefect UI or `autodev resume`."""

    step_id: str
    action: Literal["retry", "skip", "abort"]
    command: str | None = None  # retry with this command instead of the plan's
    note: str = ""
    ts: datetime


class Heartbeat(BaseModel):
    ts: datetime
    loop_status: str


class GitState(BaseModel):
    is_repo: bool = False
    branch: str | None = None
    head: str | None = None
    dirty_files: list[str] = Field(default_factory=list)  # tracked files changed, staged or not
    untracked_files: list[str] = Field(default_factory=list)
    conflicts: list[str] = Field(default_factory=list)  # unmerged paths
    commits_since_start: int = 0  # commits made after `start_head`
    diff_stat: str = ""  # `git diff --shortstat start_head` (committed and uncommitted)


class Recommendation(BaseModel):
    action: str
    reason: str
    command: str | None = None


class Insight(BaseModel):
    recommendations: list[Recommendation]
    confidence: float = Field(ge=0, le=1)
    evidence: dict[str, Any]


class SessionMetadata(BaseModel):
    """The `agent_sessions.metadata` document of one run."""

    last_command_result: LastCommandResult | None = None
    last_output_at: datetime | None = None
    command_history: list[LastCommandResult] = Field(default_factory=list)
    phase: str = "planned"
    blockers: list[Blocker] = Field(default_factory=list)
    queue: list[QueueEntry] = Field(default_factory=list)
    next_actions: list[str] = Field(default_factory=list)
    orchestrator_heartbeat: Heartbeat | None = None
    interventions: list[Intervention] = Field(default_factory=list)
    insight: Insight | None = None

    HISTORY_LIMIT: ClassVar[int] = 20

    def stopping_blocker(self) -> Blocker | None:
        """The newest blocker that stopped the run (stall, breaker or watchdog), if any."""
        return next((b for b in reversed(self.blockers) if b.kind != "failure"), None)

    def record_result(self, entry: LastCommandResult) -> None:
        """Set the last result and keep the newest HISTORY_LIMIT results, dropping the oldest."""
        self.last_command_result = entry
        self.command_history.append(entry)
        del self.command_history[: -self.HISTORY_LIMIT]


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


class StepReport(BaseModel):
    id: str
    command: str
    status: StepStatus
    exit_code: int | None
    duration_s: float
    attempts: int
    output_tail: str


class RunReport(BaseModel):
    """The contract's `--json` object."""

    run_id: str
    status: Literal["succeeded", "failed", "blocked", "running"]
    steps: list[StepReport]
    success_rate: float
    interventions: int = 0
    next_actions: list[str] = Field(default_factory=list)


def summarise_output(tail: str, limit: int = 300) -> str:
    """The last meaningful lines of an output tail, for blockers and notifications."""
    lines = [ln for ln in re.split(r"\r?\n", tail) if ln.strip()]
    text = " | ".join(lines[-3:])
    return text[-limit:] if text else "(no output)"
