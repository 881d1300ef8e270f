"""Typed data shared by every layer: plans, blockers, advice, reports.

Defined once here and reused by the CLI, the flows, the tasks and the blocks, so a plan read
from YAML, a blocker stored in the database and the `--json` output are the same objects. A
command's request and result are in `src/autodev/core/commands.py`; a run's session record and
its metadata document are in `src/autodev/core/session.py`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import cached_property
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from autodev.core.egress import Egress, NetworkMode, egress, network_mode

STEP_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

# Final statuses of the contract, plus the two a step has while its run is still going.
StepStatus = Literal["succeeded", "failed", "stalled", "timed_out", "skipped", "blocked", "pending", "running", "waiting"]
RunStatus = Literal["running", "succeeded", "failed", "blocked"]
CommandStatus = Literal["succeeded", "failed", "stalled", "timed_out"]
FAILED_STATUSES: frozenset[str] = frozenset({"failed", "stalled", "timed_out"})  # a command that did not succeed
AgentName = Literal["codex", "claude", "aider"]  # the coding-agent CLIs autodev has presets for (src/autodev/core/agents.py)
SECRET_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Strict(BaseModel):
    """Plan files are written by people: an unknown or misspelt key is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


class StepDefaults(_Strict):
    stall_timeout_s: float = Field(300, gt=0, description="Kill a step that prints nothing for this long.")
    timeout_s: float = Field(1800, gt=0, description="Hard limit on one attempt of a step.")
    retries: int = Field(0, ge=0, le=10, description="Extra attempts after a failed or timed-out one.")
    max_stall_retries: int = Field(1, ge=0, le=10, description="Attempts after a stall before the run blocks.")
    stall_clock: Literal["progress", "output"] = Field(
        "progress",
        description="progress: output resets the stall clock only when it shows progress (a new line, or a counter "
        "that advances; not the same line again, a countdown, a retry or reconnect loop, a spinner); output: any output resets it.",
    )


class Budget(_Strict):
    """What a plan or a step may spend before a person is asked whether to go on."""

    usd: float | None = Field(None, gt=0, description="Model cost, as the agents report it.")
    tokens: int | None = Field(None, gt=0, description="Model tokens, input and output.")
    wall_s: float | None = Field(None, gt=0, description="Seconds of work (the plan's: since the run began or went on).")


def _check_agent_command(template: str | None) -> str | None:
    if template is not None and "{instruction}" not in template:
        raise ValueError("needs an {instruction} placeholder where the instruction goes")
    if template is not None and re.search(r"""["']\{instruction\}|\{instruction\}["']""", template):
        raise ValueError("leave {instruction} unquoted: autodev quotes it for the shell itself")
    return template


def workspace_relative(path: str) -> str:
    """`path` normalised as a path inside the workspace; ValueError when it would leave the
    workspace (absolute, `..`) or touch git's or autodev's own files."""
    pure = PurePosixPath(path.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or not pure.parts or pure.parts[0] in (".git", ".autodev"):
        raise ValueError(f"path {path!r} would leave the workspace (or touch .git/.autodev): refused")
    return str(pure)


class Step(_Strict):
    id: str = Field(pattern=STEP_ID_PATTERN)
    kind: Literal["command", "agent"] = Field(
        "command", description="command: run a shell command; agent: a coding agent follows `instruction`."
    )
    run: str | None = Field(None, description="Shell command, run by /bin/sh -c in the sandbox's /workspace.")
    instruction: str | None = Field(None, description="What an agent step's coding agent is asked to do.")
    agent: AgentName | None = Field(
        None, description="An agent step's coding-agent CLI, run unattended with the flags its preset sets."
    )
    agent_args: str | None = Field(None, description="Extra arguments for the agent CLI (model, provider settings).")
    agent_command: str | None = Field(
        None, description="An agent step's external CLI, with {instruction} where the instruction goes "
        "(e.g. `my-agent --yes {instruction}`); unset with no `agent`: the built-in agent (needs a model)."
    )
    files: list[str] = Field(
        default_factory=list, description="Files the built-in agent may edit (default: those with TODO markers)."
    )
    context: list[str] = Field(default_factory=list, description="Files the built-in agent reads but does not edit.")
    feedback_to: str | None = Field(
        None, description="When this step fails, send the run back to that earlier (agent) step with the evidence."
    )
    depends_on: list[str] = Field(default_factory=list)
    expect: Literal["success", "tests-fail", "any"] = Field(
        "success",
        description="tests-fail: a check that succeeds when the tests fail (exit code 1 or 2), run after an agent wrote "
        "them and before one implements the code (test-first: the tests show they can fail). any: a baseline that "
        "records how the tests stand before any change; its exit code does not count.",
    )
    baseline: str | None = Field(
        None, description="A step that ran the same tests before any change: failures it saw too are not this step's."
    )
    task: str | None = Field(None, description="The task of the requirements this step serves (shown in the report).")
    worktree: str | None = Field(
        None, pattern=STEP_ID_PATTERN, description="Run in a clone of the run's repository on a branch of its own, "
        "which the steps naming the same worktree share (a task of a parallel run); unset: the run's workspace.",
    )
    merges: str | None = Field(
        None, pattern=STEP_ID_PATTERN, description="A command step that first merges that worktree's branch into "
        "the run's branch, then runs its command there (the tests); a conflict, or a command that fails, undoes the "
        "merge and goes to `feedback_to`. Merge steps run one at a time, in the order their work finished.",
    )
    stall_timeout_s: float | None = Field(None, gt=0)
    timeout_s: float | None = Field(None, gt=0)
    retries: int | None = Field(None, ge=0, le=10)
    max_stall_retries: int | None = Field(None, ge=0, le=10)
    stall_clock: Literal["progress", "output"] | None = None
    budget: Budget | None = Field(None, description="What this step's attempts may spend in all.")
    env: dict[str, str] = Field(default_factory=dict)
    network: Egress | None = Field(None, description="{allow: [hosts]}: hosts this step may reach besides the plan's allow-list.")

    @field_validator("network", mode="before")
    @classmethod
    def _allow_list(cls, network: Any) -> Egress | None:
        if network is not None and not isinstance(network, dict | Egress):
            raise ValueError(f"{network!r}: a step's network is {{allow: [hosts]}}, added to the plan's allow-list")
        return None if network is None else egress(network)

    @field_validator("run", "instruction")
    @classmethod
    def _not_blank(cls, text: str | None, info: ValidationInfo) -> str | None:
        if text is not None and not text.strip():
            raise ValueError("command is empty" if info.field_name == "run" else "instruction is empty")
        return text

    @field_validator("agent_command")
    @classmethod
    def _has_placeholder(cls, template: str | None) -> str | None:
        return _check_agent_command(template)

    @field_validator("files", "context")
    @classmethod
    def _inside_workspace(cls, paths: list[str]) -> list[str]:
        return [workspace_relative(path) for path in paths]

    @model_validator(mode="after")
    def _fields_match_kind(self) -> Step:
        if self.kind == "command":
            if self.run is None:
                raise ValueError("missing required field 'run' (or give `kind: agent` and an `instruction`)")
            if self.instruction is not None or self.agent_command is not None or self.agent is not None:
                raise ValueError("`instruction`, `agent` and `agent_command` belong to steps of kind agent")
            if self.merges is not None and self.worktree is not None:
                raise ValueError("a step that `merges` a worktree runs in the run's workspace: leave out `worktree`")
        else:
            if self.merges is not None:
                raise ValueError("`merges` belongs to a command step (the tests run after the merge)")
            if self.run is not None:
                raise ValueError("an agent step has `instruction`, not `run`")
            if self.instruction is None:
                raise ValueError("an agent step needs `instruction`")
        _one_agent(self.agent, self.agent_command, self.agent_args)
        return self

    @property
    def command(self) -> str:
        """What the step runs, as shown and stored: the shell command, or the agent's instruction."""
        if self.kind == "command":
            return self.run  # type: ignore[return-value]
        first_line = self.instruction.strip().splitlines()[0]  # type: ignore[union-attr]
        if len(first_line) > 200:
            first_line = first_line[:200].rsplit(" ", 1)[0] + " ..."
        return f"agent: {first_line}"


def _one_agent(agent: str | None, agent_command: str | None, agent_args: str | None) -> None:
    if agent is not None and agent_command is not None:
        raise ValueError("give `agent` (a preset) or `agent_command` (your own CLI), not both")
    if agent_args is not None and agent is None:
        raise ValueError("`agent_args` goes with `agent` (in an agent_command, write the arguments into it)")


class Plan(_Strict):
    project: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    image: str | None = None
    network: NetworkMode | Egress = Field(
        False,
        description="The sandbox's network: false (none, the default), true (Docker's default bridge), "
        "host (the host's), the name of a Docker network, or {allow: [hosts]} (only those, through autodev's proxy).",
    )
    secrets: list[str] = Field(
        default_factory=list,
        description="Names of environment variables (API keys) passed to every step from autodev's environment "
        "or a Prefect Secret block; their values are never stored, logged or sent.",
    )
    max_parallel: int = Field(1, ge=1, le=32, description="How many independent steps may run at once.")
    max_feedback_rounds: int = Field(
        2, ge=0, le=10, description="How many times failed checks may send the run back to each agent step."
    )
    agent: AgentName | None = Field(None, description="Default coding-agent CLI (a preset) for agent steps.")
    agent_args: str | None = Field(None, description="Extra arguments for the default agent CLI.")
    agent_command: str | None = Field(None, description="Default external agent CLI for agent steps.")
    defaults: StepDefaults = Field(default_factory=StepDefaults)
    budget: Budget | None = Field(None, description="What the whole run may spend.")
    steps: list[Step] = Field(min_length=1)

    @field_validator("agent_command")
    @classmethod
    def _has_placeholder(cls, template: str | None) -> str | None:
        return _check_agent_command(template)

    @field_validator("network", mode="before")
    @classmethod
    def _network_name(cls, network: Any) -> NetworkMode | Egress:
        if not isinstance(network, bool | str | dict | Egress):
            raise ValueError(f"{network!r}: use false, true, host, the name of a Docker network or {{allow: [hosts]}}")
        return egress(network) if isinstance(network, dict | Egress) else network_mode(network)

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not re.match(SECRET_NAME_PATTERN, name):
                raise ValueError(f"{name!r} is not an environment variable name (list names here, not values)")
        return list(dict.fromkeys(names))

    @model_validator(mode="after")
    def _one_default_agent(self) -> Plan:
        _one_agent(self.agent, self.agent_command, self.agent_args)
        return self

    def step(self, step_id: str) -> Step:
        """The step with this id; KeyError when there is none."""
        steps, by_id = self._step_index
        if steps is not self.steps:  # a copy with other steps (model_copy) carries the old index
            del self.__dict__["_step_index"]
            steps, by_id = self._step_index
        return by_id[step_id]

    @cached_property
    def _step_index(self) -> tuple[list[Step], dict[str, Step]]:
        # Not a field: pydantic leaves it out of equality, dumps and schemas.
        return self.steps, {s.id: s for s in self.steps}

    def limits_for(self, step: Step) -> StepDefaults:
        """A step's clocks and retry budgets: its own values over the plan's defaults."""
        own = {k: v for k, v in step.model_dump(include=set(StepDefaults.model_fields)).items() if v is not None}
        return self.defaults.model_copy(update=own)


class Blocker(BaseModel):
    """A failed command, and whether it stopped the run (kind `stall` or `breaker`)."""

    step_id: str
    command: str
    exit_code: int | None
    summary: str
    suggested_action: str = ""
    # manual: no agent, a person does the step; sandbox: the Docker engine went away under it;
    # host: git on this machine refused a merge step's work (a full disk, a held lock)
    # budget: a plan's or step's budget is spent; limit: its provider's limit resets past AUTODEV_LIMIT_WAIT_MAX_S
    kind: Literal["failure", "stall", "breaker", "watchdog", "manual", "sandbox", "host", "budget", "limit"] = "failure"
    ts: datetime

    @property
    def stops_the_run(self) -> bool:
        return self.kind != "failure"


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


class LLMUsage(BaseModel):
    """What one model call cost."""

    model: str
    tokens: int = 0
    cost_usd: float = 0.0


class RepositoryReport(BaseModel):
    """A run on a repository that exists: where its work went and what it changed."""

    repository: str  # the user's repository (its checkout is never touched)
    branch: str  # the new branch the work is on
    worktree: str  # the clone the run works in (its branch is brought into `repository` at the end)
    base: str  # the commit the branch starts from (the checkout's HEAD)
    left_out: list[str] = Field(default_factory=list)  # uncommitted changes of the checkout, not on the branch
    continues: str | None = None  # the earlier run on the same document whose backlog this run does
    carried: list[str] = Field(default_factory=list)  # the tasks done by earlier runs, on the branch this one started from
    commits: list[str] = Field(default_factory=list)  # "sha subject" of the branch's commits, oldest first
    diff_stat: str = ""  # `git diff --shortstat base..branch`
    tests_before: str | None = None  # the baseline's last line
    tests_after: str | None = None  # the last check's last line


class TaskReport(BaseModel):
    """How one task of the requirements went: its steps' outcome, what it cost, and for a task
    that did not succeed, why and what to do next."""

    task: str
    status: StepStatus
    steps: list[str]
    merged: bool = False  # its own branch was merged into the run's, the tests passing (a parallel run)
    branch: str | None = None  # where its work is: the run's branch, or the task's own when it was not merged
    duration_s: float = 0.0  # its steps' attempts, all of them
    tokens: int = 0  # its agent steps' model calls (the built-in agent's, or what an agent CLI reported)
    cost_usd: float = 0.0
    reason: str = ""  # what stopped it (its newest blocker's summary)
    action: str = ""  # the suggested next step
    command: str = ""  # for a blocked task, the command that decides on it (retry; skip and abort work too)
