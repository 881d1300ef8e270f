"""One command for a sandbox and what came of it: the request, the result, an agent's report, an attempt.

A step's every attempt is one command: the sandbox (`src/autodev/blocks/sandbox`) runs the
request, the result is what the run engine judges and the state store keeps. The plans they
come from are in `src/autodev/core/models.py`.
"""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, Field

from autodev.core.limits import LimitHit
from autodev.core.models import AgentName, CommandStatus


class CommandRequest(BaseModel):
    """One command for a sandbox to run."""

    command: str
    timeout_s: float
    stall_timeout_s: float
    env: dict[str, str] = Field(default_factory=dict)
    step_id: str | None = Field(
        None, description="The step this is an attempt of: the sandbox keeps its log and exit status by it (none: no files)."
    )
    attempt: int = Field(1, ge=1, description="Which attempt of the step.")
    kept_home: tuple[str, ...] = Field(
        (), description="Folders under the sandbox's HOME kept in the workspace, so a later sandbox finds them (an agent's sessions)."
    )


class AgentReport(BaseModel):
    """What a coding-agent CLI reported in its event stream: the evidence of one agent round."""

    agent: AgentName
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None  # when the agent says (Claude Code's total_cost_usd)
    files_changed: list[str] = Field(default_factory=list)  # the files its edit tools changed
    commands: int = 0  # shell commands it ran (they may have changed files too)
    last_message: str | None = None
    errors: list[str] = Field(default_factory=list)  # the agent's own error events, newest last
    events: int = 0  # how many events it printed
    session_id: str | None = None  # the CLI's session (Codex's thread): a retry continues it

    @property
    def changed_nothing(self) -> bool:
        """Neither an edit nor a command: as far as its events tell, the round did nothing."""
        return not (self.files_changed or self.commands)


class CommandResult(BaseModel):
    """What happened to one command; the exit code comes from Docker or is None with a reason."""

    status: CommandStatus
    exit_code: int | None
    exit_reason: str | None = None
    started_at: datetime
    finished_at: datetime
    output_bytes: int = 0
    output_tail: str = ""
    log_path: str | None = None
    sandbox_lost: bool = False  # the sandbox went away under it (the engine stopped): nothing can run there now
    host_refused: bool = False  # git on this machine refused the step's own work (a full disk, a held lock): no agent can fix it
    agent: AgentReport | None = None  # what an agent CLI's event stream told (a preset with one)
    round_digest: str | None = None  # an agent round's change in a git workspace, digested ("" for none)
    limit: LimitHit | None = None  # an agent stopped by its provider's usage or rate limit (`core/limits.py`)
    refused: list[str] = Field(default_factory=list)  # hosts the allow-list's proxy refused it (`core/egress.py`)

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


def summarise_output(tail: str, limit: int = 300) -> str:
    """The last meaningful lines of an output tail, for blockers and notifications."""
    lines = [ln for ln in re.split(r"\r?\n", tail) if ln.strip()]
    text = " | ".join(lines[-3:])
    return text[-limit:] if text else "(no output)"
