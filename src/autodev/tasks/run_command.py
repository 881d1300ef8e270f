"""The task that runs one attempt's command in the run's sandbox and captures what it did.

The attempt's end is judged once, here, as its step expects it (`judge`), so the task run's own
verdict in the Prefect UI says what the run does; then it is handed to the loop through the
run's result channel, before Prefect finishes the task run's own bookkeeping, so the next step
does not wait for that.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed, State

from autodev.blocks.git_state import RoundNotCommitted, change_digest, commit_round, head_of
from autodev.blocks.sandbox import SandboxSession
from autodev.core.agents import AgentStream
from autodev.core.commands import AgentReport, CommandRequest, CommandResult
from autodev.core.engine.effects import AttemptSpec
from autodev.core.engine.inputs import AttemptEnded
from autodev.core.engine.judge import judge
from autodev.core.engine.loop import ResultChannel
from autodev.core.errors import CommandFailed
from autodev.core.output import OutputCapture
from autodev.core.progress import ProgressMeter
from autodev.core.session import LLMCall


class _NoEmptyTraceback(logging.Filter):
    """Prefect logs a returned Failed state with exc_info=True; with no exception in flight
    that prints a bare "NoneType: None" under every failed command. Drop the empty traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] is None:
            record.exc_info = None
        return True


class _NoSecondVerdict(logging.Filter):
    """A step task's last line already says how the command ended ("succeeded: exit code 0
    after 0.04s, ..."); Prefect's "Finished in state Completed()" after it says it again, and
    costs each step a console render and a row in the server's log table."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (getattr(record, "task_name", None) in STEP_TASKS and str(record.msg).startswith("Finished in state"))


STEP_TASKS = ("run_command", "run_agent", "run_merge")  # the task names of steps
logging.getLogger("prefect.task_runs").addFilter(_NoEmptyTraceback())
logging.getLogger("prefect.task_runs").addFilter(_NoSecondVerdict())


@dataclass(frozen=True)
class Attempt:
    """What a step task runs: the engine's attempt, in the run's sandbox and workspace, with its
    output kept as the settings say, its end handed to the loop through `channel`."""

    spec: AttemptSpec
    sandbox: SandboxSession
    channel: ResultChannel
    workspace: Path
    tail_bytes: int = 64 * 1024  # stored with the result
    live_log_bytes: int = 1024 * 1024  # shown line by line in the task's log; the log file has all

    def request(self, command: str) -> CommandRequest:
        spec = self.spec
        return CommandRequest(
            command=command, timeout_s=spec.limits.timeout_s, stall_timeout_s=spec.limits.stall_timeout_s, env=spec.env,
            step_id=spec.step.id, attempt=spec.attempt, kept_home=spec.kept_home,
        )  # fmt: skip


@task(task_run_name="{step_id}", cache_policy=NO_CACHE, persist_result=False)
def run_command(step_id: str, attempt: Attempt) -> CommandResult | State:
    """Run the command, streaming its output into this task's log. A command that did not
    succeed ends the task run Failed (red in the UI); the state's data is a CommandFailed
    carrying the full result. (Returning the state rather than raising keeps a failing command
    from filling the log with a traceback.)"""
    assert attempt.spec.command is not None
    return run_captured(attempt, attempt.request(attempt.spec.command))


def run_captured(
    attempt: Attempt, request: CommandRequest, preamble: str = "", started_at: datetime | None = None,
    model_calls: list[LLMCall] | None = None, settle: Settle | None = None,
) -> CommandResult | State:  # fmt: skip
    """The body of every step task: run `request` under capture, then judge, record an agent
    round, hand the end over and return it. `preamble` is text put ahead of the command's output
    (what the built-in agent did before it, a merge), `started_at` when the step began, if before
    the command (the agent's model call), `model_calls` the calls it made; `settle` what the
    judged result still does before it is handed over (a merge whose tests failed is undone)."""
    spec, output = attempt.spec, output_capture(attempt)
    meter = None if spec.limits.stall_clock == "output" else ProgressMeter(AgentStream(spec.agent_stream) if spec.agent_stream else None)
    started = False

    def feed(chunk: bytes) -> bool:
        output.feed(chunk)
        attempt.channel.output_seen()
        return meter.feed(chunk) if meter else True

    def announce() -> None:  # once the command runs, so that logging the line does not delay it
        nonlocal started
        attempt.channel.began(spec.step.id, spec.attempt)
        started, shown = True, spec.redactor.text(request.command)
        get_run_logger().info("$ %s", shown if spec.attempt == 1 else f"{shown}    (attempt {spec.attempt})")
        if preamble:
            feed(preamble.encode())

    since = head_of(attempt.workspace) if spec.step.kind == "agent" else None  # the round's start
    try:
        result = attempt.sandbox.run(request, feed, announce)
    finally:
        if not started:  # it never ran (the engine went away): the log still names it
            announce()
        output.close()
    updates = {"output_bytes": output.total_bytes, "output_tail": output.tail, "log_path": str(output.log_path) if output.log_path else None}
    if started_at is not None:
        updates["started_at"] = started_at
    if meter and meter.stream:
        updates["agent"] = _masked(meter.stream.report, spec)
    return finish(attempt, result.model_copy(update=updates), model_calls or [], since, settle)


Settle = Callable[[CommandResult], CommandResult]


def finish(
    attempt: Attempt, result: CommandResult, model_calls: list[LLMCall], since: str | None = None, settle: Settle | None = None,
) -> CommandResult | State:  # fmt: skip
    """The attempt's end: judged as its step expects, an agent round committed (or `settle`d),
    handed to the loop; the task's return says the same (the result, or a Failed state carrying it)."""
    spec, logger = attempt.spec, get_run_logger()
    result = judge(spec.step, result, spec.baseline_output)
    if spec.step.kind == "agent" and result.status == "succeeded":
        result = result.model_copy(update={"round_digest": record_round(attempt, result, since)})
    if settle is not None:
        result = settle(result)
    attempt.channel.deliver(AttemptEnded(step_id=spec.step.id, attempt=spec.attempt, result=result, model_calls=model_calls))
    attempt.channel.after_handover(spec.step.id, spec.attempt)  # the next command begins first
    verdict = describe(result)
    if result.status == "succeeded":
        logger.info(verdict)
        return result
    logger.error(verdict)
    return Failed(message=verdict, data=CommandFailed(verdict, result))


def record_round(attempt: Attempt, result: CommandResult, since: str | None) -> str | None:
    """An agent round that succeeded in a git workspace is a commit of its own (the built-in
    agent commits in the sandbox; an agent CLI leaves that to this, or commits some of it
    itself since `since`). The digest of what the round changed ("" for nothing), None when
    there is no round to commit."""
    workspace, step_id, logger = attempt.workspace, attempt.spec.step.id, get_run_logger()
    if not (workspace / ".git").exists():
        return None
    try:
        sha = commit_round(workspace, f"autodev: {step_id} (attempt {attempt.spec.attempt})", since)
    except RoundNotCommitted as exc:
        logger.warning("could not commit what %s changed (git: %s); the changes stay in the workspace for the next commit", step_id, exc)
        return None
    if sha:
        logger.info("committed what %s changed: %s", step_id, sha[:8])
        return change_digest(workspace, sha, since)
    if result.agent is not None:  # an agent CLI that said it was done, having changed nothing
        logger.warning("agent step %s changed no file in the workspace", step_id)
        return ""
    return None  # the built-in agent committed in the sandbox


def _masked(report: AgentReport, spec: AttemptSpec) -> AgentReport:
    """The agent's report with secrets masked (its messages may quote what it was given)."""
    mask = spec.redactor.text
    return report.model_copy(update={"last_message": mask(report.last_message) if report.last_message else None,
                                     "errors": [mask(e) for e in report.errors]})  # fmt: skip


def output_capture(attempt: Attempt) -> OutputCapture:
    return OutputCapture(
        attempt.tail_bytes, attempt.sandbox.log_path(attempt.spec.step.id, attempt.spec.attempt),
        on_lines=get_run_logger().info, live_bytes=attempt.live_log_bytes, redactor=attempt.spec.redactor,
    )  # fmt: skip


def describe(result: CommandResult) -> str:
    code = "unknown" if result.exit_code is None else result.exit_code
    text = f"{result.status}: exit code {code} after {result.duration_s:.2f}s, {result.output_bytes} bytes of output"
    return f"{text} ({result.exit_reason})" if result.exit_reason else text
