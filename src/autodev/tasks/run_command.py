"""The task that runs one step's command in the run's sandbox and captures what it did."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from prefect import get_run_logger, task
from prefect.states import Failed

from autodev.blocks.sandbox import SandboxSession
from autodev.core.errors import CommandFailed
from autodev.core.models import AgentReport, CommandRequest, CommandResult
from autodev.core.output import OutputCapture
from autodev.core.progress import ProgressMeter
from autodev.core.redact import Redactor


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
        return not (
            getattr(record, "task_name", None) in STEP_TASKS and str(record.msg).startswith("Finished in state")
        )


STEP_TASKS = ("run_command", "run_agent")  # the task names of steps
logging.getLogger("prefect.task_runs").addFilter(_NoEmptyTraceback())
logging.getLogger("prefect.task_runs").addFilter(_NoSecondVerdict())


@dataclass(frozen=True)
class Capture:
    """How a step task captures its command's output, and whom it tells what."""

    tail_bytes: int = 64 * 1024  # stored with the result
    live_log_bytes: int = 1024 * 1024  # shown line by line in the task's log; the log file has all
    redactor: Redactor = field(default_factory=Redactor)  # secrets never reach the log, tail or file
    on_output: Callable[[], None] | None = None  # at every output chunk (the loop's heartbeat)
    # As soon as the result is known, before Prefect finishes the task run's own bookkeeping:
    # the loop acts on it (and starts the next step) without waiting for that.
    on_result: Callable[[CommandResult], None] | None = None
    # What the result means for its step (a test-first check, a baseline): the task run's own
    # verdict says the same as the run does.
    judge: Callable[[CommandResult], CommandResult] | None = None
    # Tells output that shows progress from output that repeats (the stall clock's view);
    # None: every chunk counts.
    progress: ProgressMeter | None = None


@task(task_run_name="{step_id}", cache_policy=None, persist_result=False)
def run_command(step_id: str, attempt: int, request: CommandRequest, sandbox: SandboxSession, capture: Capture) -> CommandResult:
    """Run the command, streaming its output into this task's log; return its CommandResult.

    A command that did not succeed ends the task run Failed (red in the UI); the state's data is
    a CommandFailed carrying the full result for the flow to act on. (Returning the state
    rather than raising keeps a failing command from filling the log with a traceback.)
    """
    return run_captured(attempt, request, sandbox, capture)


def run_captured(
    attempt: int,
    request: CommandRequest,
    sandbox: SandboxSession,
    capture: Capture,
    preamble: str = "",
    started_at: datetime | None = None,
) -> CommandResult | Failed:
    """The body of every step task: run `request` under capture; `preamble` is text put ahead of
    the command's output (what an agent did before it), and `started_at` when the step began,
    if before the command (the agent's model call)."""
    logger = get_run_logger()
    output = output_capture(capture, request.log_path)
    on_output = capture.on_output
    started = False

    meter = capture.progress

    def feed(chunk: bytes) -> bool:
        output.feed(chunk)
        if on_output:
            on_output()
        return meter.feed(chunk) if meter else True

    def announce() -> None:
        # Once the command runs, so that logging the line does not delay it.
        nonlocal started
        started = True
        shown = capture.redactor.text(request.command)
        logger.info("$ %s", shown if attempt == 1 else f"{shown}    (attempt {attempt})")
        if preamble:
            feed(preamble.encode())

    try:
        result = sandbox.run(request, feed, announce)
    finally:
        if not started:  # it never ran (the engine went away): the log still names it
            announce()
        output.close()
    if started_at is not None:
        result = result.model_copy(update={"started_at": started_at})
    if meter and meter.stream:
        result = result.model_copy(update={"agent": _masked(meter.stream.report, capture.redactor)})
    return verdict_of(result, output, request.log_path, capture)


def _masked(report: AgentReport, redactor: Redactor) -> AgentReport:
    """The agent's report with secrets masked (its messages may quote what it was given)."""
    last = redactor.text(report.last_message) if report.last_message else None
    return report.model_copy(update={"last_message": last, "errors": [redactor.text(e) for e in report.errors]})


def output_capture(capture: Capture, log_path: str | None) -> OutputCapture:
    return OutputCapture(
        capture.tail_bytes,
        Path(log_path) if log_path else None,
        on_lines=get_run_logger().info,
        live_bytes=capture.live_log_bytes,
        redactor=capture.redactor,
    )


def verdict_of(result: CommandResult, output: OutputCapture, log_path: str | None, capture: Capture) -> CommandResult | Failed:
    """The finished step as the task's return: the result when it succeeded, else a Failed state."""
    logger = get_run_logger()
    result = result.model_copy(update={"output_bytes": output.total_bytes, "output_tail": output.tail, "log_path": log_path})
    if capture.judge:
        result = capture.judge(result)
    if capture.on_result:
        capture.on_result(result)
    verdict = describe(result)
    if result.status == "succeeded":
        logger.info(verdict)
        return result
    logger.error(verdict)
    return Failed(message=verdict, data=CommandFailed(verdict, result))


def describe(result: CommandResult) -> str:
    code = "unknown" if result.exit_code is None else result.exit_code
    text = f"{result.status}: exit code {code} after {result.duration_s:.2f}s, {result.output_bytes} bytes of output"
    return f"{text} ({result.exit_reason})" if result.exit_reason else text
