"""Reading a failed command's evidence: an error summary, a suggested action, a fingerprint.

Pure rules over the exit code, the status and the output tail, so a notification can say what
broke and what to try, and the failure breaker (`src/autodev/core/engine/state.py`) can tell the same failure
from a new one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from autodev.core.agent import AGENT_FAILED
from autodev.core.commands import CommandResult, summarise_output
from autodev.core.egress import refusal_summary


@dataclass(frozen=True)
class Diagnosis:
    summary: str  # what happened, with the last meaningful output
    suggested_action: str  # what a person (or the next attempt) should try
    evidence: list[str] = field(default_factory=list)  # the output lines the rule matched


_NOT_FOUND = re.compile(r"(?:^|\s)(?:sh: \d+: )?([\w./+-]+): (?:command )?not found", re.M)
_NO_MODULE = re.compile(r"ModuleNotFoundError: No module named '?([\w.]+)'?")
_FAILED_TEST = re.compile(r"^FAILED (\S+::\S+)", re.M)
_ERROR_TEST = re.compile(r"^ERROR (\S+)", re.M)


def diagnose(
    command: str, result: CommandResult, stall_timeout_s: float | None = None, baseline_output: str | None = None
) -> Diagnosis:
    """What broke and what to try. With `baseline_output` (the same tests before any change), the
    failing tests that were failing there already are told apart from those the run broke."""
    failure = _Failure(command, result, stall_timeout_s, baseline_output)
    # The last rule always applies, so one is always found.
    action, *evidence = next(finding for rule in _RULES if (finding := rule(failure)))
    return Diagnosis(_summary(result), action, [e for e in evidence if e])


@dataclass(frozen=True)
class _Failure:
    """The evidence the rules read."""

    command: str
    result: CommandResult
    stall_timeout_s: float | None
    baseline_output: str | None

    @property
    def tail(self) -> str:
        return self.result.output_tail


_Finding = tuple[str, ...]  # the action, then the output lines that show it


def _summary(result: CommandResult) -> str:
    code = "unknown exit code" if result.exit_code is None else f"exit code {result.exit_code}"
    reason = f" ({result.exit_reason})" if result.exit_reason else ""
    refused = f"; the allow-list refused {', '.join(result.refused)}" if result.refused else ""
    return f"{result.status} with {code}{reason}{refused}: {summarise_output(result.output_tail)}"


def _refused_by_the_allow_list(failure: _Failure) -> _Finding | None:
    targets = failure.result.refused
    if not targets:
        return None
    return (
        f"if the step should reach {', '.join(targets)}, add it to the plan's `network: {{allow: [...]}}` (or the "
        "step's own); else make the step work without it",
        refusal_summary(targets, "the agent" if failure.command.startswith("agent:") else "the step"),
    )


def _agent_could_not_work(failure: _Failure) -> _Finding | None:
    return _agent_trouble(failure.tail) if failure.command.startswith("agent:") else None


def _ended_without_exiting(failure: _Failure) -> _Finding | None:
    ended = _how_it_ended(failure.result, failure.stall_timeout_s)
    return (ended,) if ended else None


def _missing_module(failure: _Failure) -> _Finding | None:
    if m := _NO_MODULE.search(failure.tail):
        return (
            f"Python module {m.group(1)!r} is missing: install it in an earlier step "
            f"(python -m pip install {m.group(1).split('.')[0]}) or add it to the project's dependencies",
            m.group(0),
        )
    return None


def _missing_command(failure: _Failure) -> _Finding | None:
    m = _NOT_FOUND.search(failure.tail)
    if failure.result.exit_code != 127 and not m:
        return None
    name = m.group(1) if m else failure.command.split()[0]
    return (
        f"command {name!r} is not installed in the sandbox image: install it in an earlier step, "
        "use an image that has it (plan `image:`), or fix the command's name",
        m.group(0).strip() if m else "",
    )


def _failing_tests(failure: _Failure) -> _Finding | None:
    failed = _FAILED_TEST.findall(failure.tail) or _ERROR_TEST.findall(failure.tail)
    if not failed:
        return None
    before = failed_tests(failure.baseline_output) if failure.baseline_output else set()
    broken = [t for t in failed if t not in before]
    shown = ", ".join(broken[:5]) + (f" and {len(broken) - 5} more" if len(broken) > 5 else "")
    if old := sorted(set(failed) & before):
        return (
            f"fix the tests this run broke: {shown}; already failing before the run (not this run's): {', '.join(old[:5])}",
            *broken[:5],
        )
    return (f"fix the failing tests: {shown}", *failed[:5])


def _not_permitted(failure: _Failure) -> _Finding | None:
    denied = ("Permission denied", "Operation not permitted")
    line = next((ln for ln in failure.tail.splitlines() if any(d in ln for d in denied)), None)
    if line is None:
        return None
    return (
        "the sandbox runs as a non-root user with no capabilities: write inside /workspace or /tmp, "
        "and do not rely on sudo or root-owned paths",
        line.strip(),
    )


def _disk_full(failure: _Failure) -> _Finding | None:
    if "No space left on device" in failure.tail:
        return ("the disk is full: free space on the Docker host or clean the workspace",)
    return None


def _no_network(failure: _Failure) -> _Finding | None:
    if re.search(r"Temporary failure in name resolution|Network is unreachable|Could not resolve host", failure.tail):
        return ("the command needs a network: set `network: true` in the plan, or vendor what it downloads",)
    return None


def _killed(failure: _Failure) -> _Finding | None:
    result = failure.result
    if result.exit_code not in (137, 143):  # not out of memory (the cgroup counted no OOM kill): a signal from inside
        return None
    return (
        f"the command was killed ({result.exit_reason or f'exit {result.exit_code}'}): something it ran sent the signal "
        "(a test runner's timeout, a kill in a script); read the step's log for who",
    )


def _read_the_log(failure: _Failure) -> _Finding:
    log = f" ({failure.result.log_path})" if failure.result.log_path else ""
    return (f"read the step's full log{log} for the first error, fix it, then retry the step",)


# Tried in order, the first that applies wins: the more specific evidence comes first.
_RULES: tuple[Callable[[_Failure], _Finding | None], ...] = (
    _refused_by_the_allow_list,
    _agent_could_not_work,
    _ended_without_exiting,
    _missing_module,
    _missing_command,
    _failing_tests,
    _not_permitted,
    _disk_full,
    _no_network,
    _killed,
    _read_the_log,
)


# What coding-agent CLIs print when their model provider cannot be used (Codex's JSON errors,
# litellm's and Anthropic's messages).
_AGENT_AUTH = re.compile(
    r".*(?:401 Unauthorized|API Error: 401|Incorrect API key|invalid[_ ]api[_ ]key|authentication_(?:error|failed)"
    r"|Missing environment variable).*",
    re.I,
)
_WANTS_A_TERMINAL = re.compile(
    r".*(?:stdin is not a (?:terminal|tty)|not a tty|Raw mode is not supported|requires an interactive terminal"
    r"|Inappropriate ioctl for device).*",
    re.I,
)
_AGENT_QUOTA = re.compile(r".*(?:429 Too Many Requests|rejected \(429\)|rate[_ ]limit(?:ed)?\b|insufficient_quota).*", re.I)
_AGENT_UNREACHABLE = re.compile(
    r".*(?:Reconnecting\.\.\.|stream disconnected before completion|error sending request|Connection failed"
    r"|APIConnectionError|Connection refused|Connection error|Network is unreachable|APITimeoutError).*",
    re.I,
)


def _agent_trouble(tail: str) -> tuple[str, str] | None:
    """The action (and the line that shows it) when an agent's model provider refused or could
    not be reached; the last such line counts."""
    rules = [
        (_WANTS_A_TERMINAL, "the agent CLI wants a terminal, and the sandbox has none (stdin is /dev/null): run it "
         "in its non-interactive mode, with a preset (`agent: codex | claude | aider`) or its own exec/print flag"),
        (_AGENT_AUTH, "the agent's model provider refused its credentials: check the API key the step gets "
         "(list its name under `secrets:` and set it where autodev runs, or in a Prefect Secret block), then retry"),
        (_AGENT_QUOTA, "the model provider rate-limited the agent (429) or its quota is spent: wait or raise the quota, "
         "then retry the step (or give it `retries`)"),
        (_AGENT_UNREACHABLE, "the agent could not reach its model: the sandbox has no network unless the plan sets "
         "`network` (`true` needs a Docker bridge; else `host` or a named network); check the provider's base URL, "
         "then retry the step"),
    ]
    for pattern, action in rules:
        if matches := pattern.findall(tail):
            return action, matches[-1].strip()[:300]
    return None


def _how_it_ended(result: CommandResult, stall_timeout_s: float | None) -> str | None:
    """The action for what the status and the exit reason alone say (the output aside)."""
    reason = result.exit_reason or ""
    if result.status == "stalled" and "lines that repeat" in reason:
        return (
            f"it printed only lines that repeat for {stall_timeout_s or 0:g}s (a reconnect or retry loop, a spinner): "
            "read the log for what it waits on (a model or server it cannot reach, a lock); if a count changing on "
            "one line is its progress, set `stall_clock: output` on the step"
        )
    if result.status == "stalled":
        return (
            f"the command printed nothing new for {stall_timeout_s or 0:g}s: check that it does not wait for input, "
            "a network (the sandbox has none unless the plan sets network: true) or a lock; "
            "if it is legitimately quiet, raise the step's stall_timeout_s"
        )
    if result.status == "timed_out":
        return "the command ran past its timeout_s: raise the step's timeout_s or split the step"
    if result.exit_code is None and reason.startswith(AGENT_FAILED):
        return (
            "the coding agent produced no usable edits: check the model (AUTODEV_LLM_MODEL, its endpoint and key) "
            "and the step's files, then retry the step"
        )
    if result.exit_code is None:
        return f"the Docker engine went away ({reason}); run `autodev doctor`, then retry the step"
    if reason.startswith("out of memory"):
        return "the command ran out of memory: raise AUTODEV_SANDBOX_MEMORY or make the command use less memory"
    return None


# Failed tests as test runners print them: pytest, go test, cargo test, jest/vitest.
_FAILED_ANYWHERE = re.compile(
    r"^(?:FAILED|ERROR) (\S+)|^--- FAIL: (\S+)|^test (\S+) \.\.\. FAILED|^\s*[✕×] (.+?)(?: \(\d+ ?m?s\))?$", re.M
)


def failed_tests(output: str) -> set[str]:
    """The names of the tests an output says failed (empty when it names none)."""
    return {next(group for group in m.groups() if group) for m in _FAILED_ANYWHERE.finditer(output)}


def fingerprint(command: str, result: CommandResult) -> str:
    """Same command, same exit code, same output tail (digits ignored: timings and pids vary)."""
    tail = re.sub(r"\d+", "#", result.output_tail[-4096:])
    key = f"{command}\0{result.exit_code}\0{result.status}\0{tail}"
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:16]
