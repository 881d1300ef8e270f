"""Coding-agent CLIs as presets: the flags that make each run unattended, and how to read its events.

A plan's agent step names `agent: codex | claude | aider`; the preset turns that into a command
line that neither asks nor waits (every flag it sets is listed with its reason, and shown in
docs/agents.md), names the API key variables the CLI reads (passed through from autodev's
environment when set), and gives the step a stall timeout that leaves the CLI's own idle timeout
and retries room to work. For a CLI that prints a JSON event stream, `AgentStream` reads it: which
lines are progress (a tool call, a file edit, model output) and which are not (a reconnect loop),
and the evidence of the round: tokens, cost, files changed, the agent's last message.

Pure code: the sandbox and the tasks use it; it runs nothing.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from pydantic import BaseModel

from autodev.core.commands import AgentReport
from autodev.core.egress import NetworkMode
from autodev.core.models import AgentName, Plan, Step, StepDefaults
from autodev.core.session import LLMCall


class AgentPreset(BaseModel, frozen=True):
    name: AgentName
    binary: str  # what must be on the image's PATH
    package: str  # what `autodev image build --agent` installs: npm:<spec> or pip:<spec>
    command: str  # the command line; {args} takes the step's agent_args, {instruction} the quoted instruction
    flags: dict[str, str]  # each flag the preset sets, and why
    secrets: tuple[str, ...]  # the API key variables the CLI reads: passed to the sandbox when set
    env: dict[str, str] = {}  # variables the preset sets for the CLI (a step's `env` wins)
    stall_timeout_s: float  # default, coordinated with the CLI's own idle timeout and retries
    stall_reason: str  # why that default
    stream: AgentName | None  # how to read what it prints (codex, claude: JSON events; aider: its lines)
    model_hosts: tuple[str, ...] = ()  # where it reaches its model unless configured otherwise (allowed by an allow-list)
    resume: str | None = None  # the command line that continues a session: {session} is its id
    sessions: str | None = None  # where under HOME the CLI keeps its sessions (kept in the workspace)

    def template(self, args: str | None, session: str | None = None) -> str:
        """The command template (with {instruction}) for a step with these `agent_args`; with a
        `session`, the one that continues it."""
        command = self.resume.replace("{session}", shlex.quote(session)) if session and self.resume else self.command
        return " ".join(command.replace("{args}", args or "").split())


CODEX = AgentPreset(
    name="codex",
    binary="codex",
    package="npm:@openai/codex@0.171.0",
    command="codex exec --json --dangerously-bypass-approvals-and-sandbox --skip-git-repo-check {args} {instruction}",
    flags={
        "exec": "runs one task to its end and exits, with no terminal interface",
        "--json": "prints one JSON event per line: autodev reads tool calls, edits, tokens and the last message from it",
        "--dangerously-bypass-approvals-and-sandbox": "asks for no approvals; autodev's container is the sandbox "
        "(Codex's own bwrap sandbox cannot create namespaces in it, and without this flag Codex does nothing and exits 0)",
        "--skip-git-repo-check": "works in a workspace that is not a git repository too (`autodev exec` runs in "
        "any directory; `autodev run`'s workspaces are repositories)",
    },
    secrets=("OPENAI_API_KEY", "CODEX_API_KEY"),
    stall_timeout_s=600,
    # exec's own flags before `resume`: it takes them from there (and refuses some, -s, -C, after it).
    resume="codex exec --json --dangerously-bypass-approvals-and-sandbox --skip-git-repo-check {args} resume {session} {instruction}",
    sessions=".codex/sessions",
    stall_reason="Codex waits 300 s for a silent model stream before it reconnects (5 times): 600 s lets one "
    "reconnect succeed; its 'Reconnecting...' lines are not progress, so a model that cannot be reached is "
    "stopped after 600 s, not after Codex's own 25 minutes",
    stream="codex",
    model_hosts=("api.openai.com", "chatgpt.com"),
)
CLAUDE = AgentPreset(
    name="claude",
    binary="claude",
    package="npm:@anthropic-ai/claude-code@2.1.332",
    command="claude -p --output-format stream-json --verbose --dangerously-skip-permissions {args} {instruction}",
    flags={
        "-p": "print mode: answers the one prompt and exits, with no terminal interface",
        "--output-format stream-json": "one JSON event per line (needs --verbose with -p): tool calls, cost, result",
        "--verbose": "required by stream-json in print mode",
        "--dangerously-skip-permissions": "asks for no permission per tool; autodev's container is the sandbox "
        "(refused as root: the sandbox never runs as root)",
    },
    secrets=("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"),
    # No traffic but the model's (telemetry, update checks, error reports): nothing else to wait on.
    env={"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"},
    stall_timeout_s=600,
    resume="claude -p --output-format stream-json --verbose --dangerously-skip-permissions {args} --resume {session} {instruction}",
    sessions=".claude/projects",
    stall_reason="Claude Code retries a failing API call 10 times over about 3 minutes, each retry an `api_retry` "
    "event, which is not progress; a stream that goes silent can keep it quiet for 5 minutes and more: 600 s covers "
    "a slow turn, and a provider that keeps failing blocks the run for a person",
    stream="claude",
    model_hosts=("api.anthropic.com",),
)
AIDER = AgentPreset(
    name="aider",
    binary="aider",
    package="pip:aider-chat==0.86.2",
    command="aider --yes-always --no-git --no-pretty --no-stream --no-check-update --no-show-release-notes "
    "--analytics-disable --no-fancy-input --no-detect-urls --disable-playwright --no-show-model-warnings "
    "--chat-history-file /dev/null --input-history-file /dev/null {args} --message {instruction}",
    flags={
        "--message": "sends the one instruction, applies the edits and exits",
        "--yes-always": "answers yes to every question it would ask (create a file, run a command)",
        "--no-git": "leaves commits to autodev, which commits each agent round itself",
        "--no-pretty --no-stream --no-fancy-input": "plain line-by-line output, no terminal control codes",
        "--no-check-update --no-show-release-notes --analytics-disable": "nothing asked of the network but the model",
        "--no-detect-urls --disable-playwright": "a URL in the instruction is not fetched (with --yes-always aider "
        "would scrape it and try to pip-install Playwright)",
        "--no-show-model-warnings": "no browser opened for a model it does not know",
        "--chat-history-file /dev/null --input-history-file /dev/null": "leaves no history files in the workspace",
    },
    secrets=("OPENAI_API_KEY", "ANTHROPIC_API_KEY"),
    env={"BROWSER": "true", "COLUMNS": "200"},  # no browser to open; lines not wrapped at 80 columns
    stall_timeout_s=600,
    stall_reason="aider waits 600 s for each model answer (its SDK retries twice, printing nothing), then retries "
    "with backoff, printing the same lines: 600 s covers a slow answer, and a model that does not answer blocks "
    "the run for a person after 600 s rather than after aider's own half hour and more",
    stream="aider",
    model_hosts=("api.openai.com", "api.anthropic.com"),
)
PRESETS: dict[str, AgentPreset] = {p.name: p for p in (CODEX, CLAUDE, AIDER)}


class AgentChoice(BaseModel, frozen=True):
    """The coding-agent CLI a run's every agent step uses (`autodev run --agent`, or `agent` in
    the config file), whoever made the plan: the model, the template fallback, a repository's."""

    name: AgentName
    args: str | None = None  # the preset's `agent_args`: model, provider settings
    image: str | None = None  # a sandbox image that holds the CLI (None: the plan's own)
    network: NetworkMode = True  # the CLI reaches its model: the plan's network, unless it has one


def with_agent(plan: Plan, choice: AgentChoice) -> Plan:
    """`plan` with every agent step running `choice`'s preset: the steps' own agents and agent
    commands give way, the image is one that holds the CLI, and a plan with no network gets
    `choice.network`. Command steps are as they were."""
    steps = [
        {**step.model_dump(exclude_unset=True), "agent": None, "agent_args": None, "agent_command": None}
        if step.kind == "agent" else step.model_dump(exclude_unset=True)
        for step in plan.steps
    ]  # fmt: skip
    return Plan.model_validate({
        **plan.model_dump(exclude_unset=True), "steps": steps, "agent": choice.name, "agent_args": choice.args,
        "agent_command": None, "image": choice.image or plan.image, "network": plan.network or choice.network,
    })  # fmt: skip


def preset_of(plan: Plan, step: Step) -> AgentPreset | None:
    """The preset an agent step runs with: its own `agent`, else the plan's (unless the step or
    the plan names an agent_command of its own); None for a command step or the built-in agent."""
    if step.kind != "agent" or step.agent_command:
        return None
    name = step.agent or (None if plan.agent_command else plan.agent)
    return PRESETS[name] if name else None


def step_limits(plan: Plan, step: Step, stall_timeout_s: float | None) -> StepDefaults:
    """A step's clocks and budgets: its own over `stall_timeout_s` (AUTODEV_STALL_TIMEOUT_S) over
    a stall timeout the plan's defaults give over its agent preset's, over the plan's defaults."""
    found = plan.limits_for(step)
    preset = preset_of(plan, step)
    if stall_timeout_s and step.stall_timeout_s is None:
        found = found.model_copy(update={"stall_timeout_s": stall_timeout_s})
    elif preset and step.stall_timeout_s is None and "stall_timeout_s" not in plan.defaults.model_fields_set:
        found = found.model_copy(update={"stall_timeout_s": preset.stall_timeout_s})
    return found


def agent_template(plan: Plan, step: Step, session: str | None = None) -> str | None:
    """An agent step's CLI command template (with {instruction}), continuing `session` when
    given; None: the built-in agent."""
    if preset := preset_of(plan, step):
        return preset.template(step.agent_args if step.agent else plan.agent_args, session)
    return step.agent_command or plan.agent_command


def agent_call(step_id: str, report: AgentReport) -> LLMCall:
    """An agent CLI's round as the model usage it reported (kept with the built-in agent's)."""
    tokens = report.input_tokens + report.output_tokens
    return LLMCall(purpose=f"agent:{step_id}", model=f"{report.agent} cli", tokens=tokens, cost_usd=report.cost_usd or 0.0)


def presets_in(plan: Plan) -> list[AgentPreset]:
    """The presets a plan's agent steps run with, each once."""
    found = {p.name: p for step in plan.steps if (p := preset_of(plan, step))}
    return list(found.values())


class AgentStream:
    """Reads what an agent CLI prints, one line at a time: its JSON events (Codex, Claude Code)
    or its plain lines (aider)."""

    def __init__(self, agent: AgentName):
        self.report = AgentReport(agent=agent)
        self._read = _codex_event if agent == "codex" else _claude_event

    def feed(self, line: str) -> bool | None:
        """Whether this line shows progress; None when it is not one of the agent's events (the
        stall clock's own rule then decides)."""
        if self.report.agent == "aider":
            _aider_line(line.strip(), self)
            return None
        if not line.lstrip().startswith("{"):
            return None
        try:
            event = json.loads(line)
        except ValueError:
            return None
        if not isinstance(event, dict) or "type" not in event:
            return None
        self.report.events += 1
        return self._read(event, self)

    def changed(self, path: str) -> None:
        path = path.removeprefix("/workspace/")
        if path and path not in self.report.files_changed:
            self.report.files_changed.append(path)

    def failed(self, message: Any) -> bool:
        self.report.errors = [*self.report.errors[-9:], str(message)[:500]]
        return False


def _codex_event(event: dict[str, Any], stream: AgentStream) -> bool:
    """Codex `exec --json`: thread/turn/item events; `error` and `turn.failed` are not progress."""
    kind = event["type"]
    report = stream.report
    if kind == "thread.started":
        report.session_id = event.get("thread_id") or report.session_id
        return True
    if kind == "error":
        return stream.failed(event.get("message", ""))
    if kind == "turn.failed":
        return stream.failed((event.get("error") or {}).get("message", "the turn failed"))
    if kind == "turn.completed":
        usage = event.get("usage") or {}
        report.input_tokens += int(usage.get("input_tokens") or 0)
        report.output_tokens += int(usage.get("output_tokens") or 0)
        return True
    item = event.get("item") or {}
    if item.get("type") == "error":
        return stream.failed(item.get("message", ""))
    if item.get("type") == "agent_message" and item.get("text"):
        report.last_message = item["text"]
    if item.get("type") == "file_change":
        for change in item.get("changes") or []:
            stream.changed(change.get("path", ""))
    if item.get("type") == "command_execution" and kind == "item.completed":
        report.commands += 1
    return True


_AIDER_EDIT = re.compile(r"^Applied edit to (.+)$")
_AIDER_TOKENS = re.compile(r"^Tokens: ([\d.]+k?) sent,(?: [\d.]+k? cache write,)?(?: [\d.]+k? cache hit,)? ([\d.]+k?) received\.")
_AIDER_COST = re.compile(r"Cost: \$[\d.]+ message, \$([\d.]+) session")
_AIDER_ERROR = re.compile(r"^litellm\.\w+:")


def _aider_line(line: str, stream: AgentStream) -> None:
    """aider's plain lines: the edits it applied, each model call's tokens and the session's cost,
    the provider's errors (aider exits 0 after them all the same)."""
    report = stream.report
    if m := _AIDER_EDIT.match(line):
        stream.changed(m.group(1))
    elif m := _AIDER_TOKENS.match(line):
        report.input_tokens += _count(m.group(1))
        report.output_tokens += _count(m.group(2))
    elif _AIDER_ERROR.match(line):
        stream.failed(line)
    if m := _AIDER_COST.search(line):
        report.cost_usd = float(m.group(1))


def _count(text: str) -> int:
    return round(float(text[:-1]) * 1000) if text.endswith("k") else int(float(text))


def _claude_event(event: dict[str, Any], stream: AgentStream) -> bool:
    """Claude Code `stream-json`: system/assistant/user messages and a final result."""
    kind = event["type"]
    report = stream.report
    if kind == "system" and event.get("subtype") == "init":
        report.session_id = event.get("session_id") or report.session_id
    if kind == "system" and event.get("subtype") == "api_retry":  # retrying a failed call: no progress
        status = event.get("error_status") or "no answer"
        return stream.failed(f"API retry {event.get('attempt')}/{event.get('max_retries')}: {status} {event.get('error', '')}")
    if kind == "result":
        usage = event.get("usage") or {}
        report.input_tokens = int(usage.get("input_tokens") or 0)
        report.output_tokens = int(usage.get("output_tokens") or 0)
        report.cost_usd = event.get("total_cost_usd")
        if event.get("result"):
            report.last_message = str(event["result"])
        if event.get("is_error"):
            stream.failed(event.get("result") or event.get("subtype", "error"))
        return True
    for block in (event.get("message") or {}).get("content") or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and block.get("text"):
            report.last_message = block["text"]
        if block.get("type") == "tool_use" and block.get("name") in ("Write", "Edit", "MultiEdit", "NotebookEdit"):
            stream.changed((block.get("input") or {}).get("file_path", ""))
        if block.get("type") == "tool_use" and block.get("name") == "Bash":
            report.commands += 1
    return kind in ("assistant", "user", "system")
