"""A person's decision on a blocked run: the pause with its form in the Prefect UI, and its text.

The form is the core `Decision` model (`autodev/session.py`) as a Prefect `RunInput`, so the UI
shows it under the evidence; `autodev resume` sends the same fields.
"""

from __future__ import annotations

import logging

from prefect import pause_flow_run, runtime
from prefect.client.orchestration import get_client
from prefect.exceptions import FlowPauseTimeout
from prefect.input import RunInput
from prefect.states import Running

from autodev.session import Blocker, Decision

DecisionForm = RunInput.subclass_from_base_model_type(Decision)


def ask_for_decision(
    blocker: Blocker, run_id: str, timeout_s: float, logger: logging.Logger | logging.LoggerAdapter
) -> Decision | None:
    """Pause the flow run until a person decides (Prefect UI or `autodev resume`), or None when
    `timeout_s` passes first (the run stays blocked and can be resumed later)."""
    try:
        return pause_flow_run(
            wait_for_input=DecisionForm.with_initial_data(
                description=decision_markdown(blocker, run_id), action="skip" if blocker.kind == "manual" else "retry"
            ),
            timeout=int(timeout_s),
            poll_interval=max(1, min(10, int(timeout_s // 4) or 1)),
        )
    except FlowPauseTimeout:
        back_to_running("no decision in time")
        logger.warning(
            "no decision within %ss: the run stays blocked; `autodev resume %s --action ...` continues it", timeout_s, run_id
        )
        return None


def back_to_running(message: str) -> None:
    """After a pause timed out: Prefect would fail the flow run as "never resumed"; take it back
    to Running so the run ends with its own state, message and report."""
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(runtime.flow_run.id, Running(message=message), force=True)


def decision_markdown(blocker: Blocker, run_id: str) -> str:
    code = "unknown" if blocker.exit_code is None else blocker.exit_code
    return (
        f"## Run blocked at step `{blocker.step_id}` ({blocker.kind})\n\n"
        f"**Command:** `{blocker.command}`  \n**Exit code:** {code}\n\n"
        f"**What happened:** {blocker.summary}\n\n**Suggested action:** {blocker.suggested_action}\n\n"
        "Choose *retry* (optionally with an edited command), *skip* (go on without this step) or *abort*. "
        f"From a shell: `autodev resume {run_id} --action retry|skip|abort [--command CMD]`."
    )
