"""The built-in coding agent: one agent step's attempt, as a task named after the step.

The model is asked from here (the sandbox has no network); the edits it returns are checked
(only the files the step may edit, never outside the workspace), staged under
`.autodev/agent/`, and copied into place by a command inside the sandbox, so they land with
the sandbox user's ownership and under the same capture, clocks and breaker as any command.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from prefect import get_run_logger, task
from prefect.states import Failed

from autodev.blocks.llm import LLM, LLMError
from autodev.blocks.sandbox import SandboxSession
from autodev.core.agent import AGENT_FAILED, AGENT_PROMPT, AgentEdits, agent_request, apply_edits_command, check_edits
from autodev.core.errors import BadInput
from autodev.core.models import CommandRequest, CommandResult, LLMUsage, Step, utcnow
from autodev.tasks.run_command import Capture, output_capture, run_captured, verdict_of


@task(task_run_name="{step_id}", cache_policy=None, persist_result=False)
def run_agent(
    step_id: str,
    attempt: int,
    step: Step,
    evidence: str | None,
    workspace: str,
    todo_files: list[str],
    sandbox: SandboxSession,
    llm: LLM,
    request: CommandRequest,
    capture: Capture,
    on_usage: Callable[[LLMUsage], None] | None = None,
) -> CommandResult:
    """Ask the model for edits to the step's files (default: those that held TODO markers when
    the run began) and apply them in the sandbox, under `request`'s clocks, log and marks (its
    command is the one that applies the edits). `evidence` is the failed check that sent the run
    back here, if any; the model sees it under the instruction."""
    logger = get_run_logger()
    root = Path(workspace)
    started_at = utcnow()
    allowed = step.files or todo_files

    def gave_up(reason: str, status: str = "failed") -> CommandResult | Failed:
        return _no_edits(reason, status, started_at, capture, request.log_path)

    if not allowed:
        return gave_up("nothing to edit: no file holds a TODO(autodev) marker and the step lists no `files`")
    files = {path: _read(root, path) for path in allowed}
    context = {path: _read(root, path) for path in step.context}
    logger.info("%s    (model %s%s)", step.command, llm.model, ", with the failed check's evidence" if evidence else "")
    # The model call prints nothing until it answers: the step's stall clock is its time limit.
    model = llm.model_copy(update={"timeout_s": min(llm.timeout_s, request.stall_timeout_s, request.timeout_s)})
    try:
        answer = model.ask_json(AGENT_PROMPT, agent_request(step.instruction or "", files, context, evidence), AgentEdits)
    except LLMError as exc:
        if exc.usage and on_usage:
            on_usage(exc.usage)
        return gave_up(str(exc), "stalled" if exc.timed_out else "failed")
    if on_usage:
        on_usage(answer.usage)
    edits = answer.value
    try:
        checked = check_edits(edits, set(allowed))
    except BadInput as exc:
        return gave_up(str(exc))
    stage = _stage(root, f"{step_id}.{attempt}", checked)
    # Copied (and committed) by the sandbox user, so the files keep the workspace's owner.
    apply = request.model_copy(update={"command": apply_edits_command(stage, list(checked), f"{step_id}: {edits.summary}"[:200])})
    preamble = f"agent ({llm.model}): {edits.summary}\nedits: {', '.join(checked)}\n"
    return run_captured(attempt, apply, sandbox, capture, preamble=preamble, started_at=started_at)


def _no_edits(reason: str, status: str, started_at: datetime, capture: Capture, log_path: str | None) -> CommandResult | Failed:
    """The attempt's end when the agent produced no edits: the reason is its output, the exit code unknown."""
    output = output_capture(capture, log_path)
    output.feed(f"{AGENT_FAILED}{reason}\n".encode())
    output.close()
    result = CommandResult(
        status=status, exit_code=None, exit_reason=f"{AGENT_FAILED}{reason}"[:500], started_at=started_at, finished_at=utcnow()
    )
    return verdict_of(result, output, log_path, capture)


def _stage(root: Path, name: str, edits: dict[str, str]) -> str:
    """Write the edits under .autodev/agent/NAME/; that folder, relative to the workspace."""
    stage = Path(".autodev") / "agent" / name
    for path, content in edits.items():
        target = root / stage / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    return stage.as_posix()


def _read(root: Path, relative: str) -> str:
    try:
        return (root / relative).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""  # a file the agent is to create
