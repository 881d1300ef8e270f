"""The task that runs one step's command in the run's sandbox and captures what it did."""

from __future__ import annotations

import logging
from datetime import datetime
from collections.abc import Callable
from pathlib import Path

from prefect import get_run_logger, task
from prefect.states import Failed

from autodev.errors import CommandFailed
from autodev.models import CommandRequest, CommandResult
from autodev.output import OutputCapture
from autodev.redact import Redactor
from blocks.sandbox import SandboxSession


class _NoEmptyTraceback(logging.Filter):
    """Prefect logs a returned Failed state with exc_info=True; with no exception in flight
    that prints a bare "NoneType: None" under every failed command. Drop the empty traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] is None:
            record.exc_info = None
        return True


logging.getLogger("prefect.task_runs").addFilter(_NoEmptyTraceback())


@task(task_run_name="{step_id}", cache_policy=None, persist_result=False)
def run_command(
    step_id: str,
    attempt: int,
    request: CommandRequest,
    sandbox: SandboxSession,
    tail_bytes: int = 64 * 1024,
    live_log_bytes: int = 1024 * 1024,
    on_output: Callable[[], None] | None = None,
    redactor: Redactor | None = None,
) -> CommandResult:
    """Run the command, streaming its output into this task's log; return its CommandResult.

    `on_output` is called at every output chunk (the stall clock itself lives in the sandbox);
    secrets `redactor` knows never reach the log, the stored tail or the log file.

    A command that did not succeed ends the task run Failed (red in the UI); the state's data is
    a CommandFailed carrying the full result for the flow to act on. (Returning the state
    rather than raising keeps a failing command from filling the log with a traceback.)
    """
    return run_captured(attempt, request, sandbox, tail_bytes, live_log_bytes, on_output, redactor)


def run_captured(
    attempt: int,
    request: CommandRequest,
    sandbox: SandboxSession,
    tail_bytes: int,
    live_log_bytes: int,
    on_output: Callable[[], None] | None,
    redactor: Redactor | None,
    preamble: str = "",
    started_at: datetime | None = None,
) -> CommandResult | Failed:
    """The body of every step task: run `request` under capture; `preamble` is text put ahead of
    the command's output (what an agent did before it), and `started_at` when the step began,
    if before the command (the agent's model call)."""
    logger = get_run_logger()
    redactor = redactor or Redactor()
    shown = redactor.text(request.command)
    logger.info("$ %s", shown if attempt == 1 else f"{shown}    (attempt {attempt})")
    log_path = Path(request.log_path) if request.log_path else None
    capture = OutputCapture(tail_bytes, log_path, on_lines=logger.info, live_bytes=live_log_bytes, redactor=redactor)

    def feed(chunk: bytes) -> None:
        capture.feed(chunk)
        if on_output:
            on_output()  # the loop's heartbeat reports the newest output time

    if preamble:
        feed(preamble.encode())
    try:
        result = sandbox.run(request, feed)
    finally:
        capture.close()
    if started_at is not None:
        result = result.model_copy(update={"started_at": started_at})
    return verdict_of(result, capture, request.log_path)


def verdict_of(result: CommandResult, capture: OutputCapture, log_path: str | None) -> CommandResult | Failed:
    """The finished step as the task's return: the result when it succeeded, else a Failed state."""
    logger = get_run_logger()
    result = result.model_copy(update={"output_bytes": capture.total_bytes, "output_tail": capture.tail, "log_path": log_path})
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
