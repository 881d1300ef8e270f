"""The built-in coding agent: one agent step's attempt, as a task named after the step.

The model is asked from here (the sandbox has no network); the edits it returns are checked
(only the files the step may edit, never outside the workspace), staged under
`.autodev/agent/`, and copied into place by a command inside the sandbox, so they land with
the sandbox user's ownership and under the same capture, clocks and breaker as any command.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import State

from autodev.blocks.llm import LLM, LLMError
from autodev.core.agent import AGENT_FAILED, AGENT_PROMPT, AgentEdits, agent_request, apply_edits_command, check_edits
from autodev.core.commands import CommandResult
from autodev.core.errors import BadInput
from autodev.core.models import LLMUsage, utcnow
from autodev.core.session import LLMCall
from autodev.tasks.run_command import Attempt, finish, output_capture, run_captured


@task(task_run_name="{step_id}", cache_policy=NO_CACHE, persist_result=False)
def run_agent(step_id: str, attempt: Attempt, llm: LLM) -> CommandResult | State:
    """Ask the model for edits to the step's files (default: those that held TODO markers when
    the run began) and apply them in the sandbox, under the attempt's clocks, log and marks (its
    command is the one that applies the edits). The failed check that sent the run back here,
    if any, is the evidence the model sees under the instruction."""
    spec, root, started_at = attempt.spec, attempt.workspace, utcnow()
    allowed = spec.step.files or list(spec.todo_files)
    calls: list[LLMCall] = []
    if not allowed:
        return _no_edits(attempt, "nothing to edit: no file holds a TODO(autodev) marker and the step lists no `files`", started_at, calls)
    files = {path: _read(root, path) for path in allowed}
    context = {path: _read(root, path) for path in spec.step.context}
    evidence = ", with the failed check's evidence" if spec.evidence else ""
    get_run_logger().info("%s    (model %s%s)", spec.step.command, llm.model, evidence)
    # The model call prints nothing until it answers: the step's stall clock is its time limit.
    model = llm.model_copy(update={"timeout_s": min(llm.timeout_s, spec.limits.stall_timeout_s, spec.limits.timeout_s)})
    try:
        answer = model.ask_json(AGENT_PROMPT, agent_request(spec.step.instruction or "", files, context, spec.evidence), AgentEdits)
    except LLMError as exc:
        calls += [_call(step_id, exc.usage)] if exc.usage else []
        return _no_edits(attempt, str(exc), started_at, calls, "stalled" if exc.timed_out else "failed")
    calls.append(_call(step_id, answer.usage))
    edits = answer.value
    try:
        checked = check_edits(edits, set(allowed))
    except BadInput as exc:
        return _no_edits(attempt, str(exc), started_at, calls)
    stage = _stage(root, f"{step_id}.{spec.attempt}", checked)
    # Copied (and committed) by the sandbox user, so the files keep the workspace's owner.
    apply = attempt.request(apply_edits_command(stage, list(checked), f"{step_id}: {edits.summary}"[:200]))
    preamble = f"agent ({llm.model}): {edits.summary}\nedits: {', '.join(checked)}\n"
    return run_captured(attempt, apply, preamble=preamble, started_at=started_at, model_calls=calls)


def _call(step_id: str, usage: LLMUsage) -> LLMCall:
    return LLMCall(purpose=f"agent:{step_id}", **usage.model_dump())


def _no_edits(attempt: Attempt, reason: str, started_at: datetime, calls: list[LLMCall], status: str = "failed") -> CommandResult | State:
    """The attempt's end when the agent produced no edits: the reason is its output, the exit code unknown."""
    output = output_capture(attempt)
    output.feed(f"{AGENT_FAILED}{reason}\n".encode())
    output.close()
    result = CommandResult(
        status=status, exit_code=None, exit_reason=f"{AGENT_FAILED}{reason}"[:500], started_at=started_at, finished_at=utcnow(),
        output_bytes=output.total_bytes, output_tail=output.tail, log_path=str(output.log_path) if output.log_path else None,
    )  # fmt: skip
    return finish(attempt, result, calls)


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
