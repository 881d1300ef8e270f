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

from autodev.models import Blocker
from autodev.session import Decision

DecisionForm = RunInput.subclass_from_base_model_type(Decision)


def ask_for_decision(
    blockers: list[Blocker], run_id: str, timeout_s: float, logger: logging.Logger | logging.LoggerAdapter
) -> Decision | None:
    """Pause the flow run until a person decides on one of the blocked steps (Prefect UI or
    `autodev resume`), or None when `timeout_s` passes first (the run stays blocked and can be
    resumed later). The form starts on the first blocked step."""
    first = blockers[0]
    try:
        return pause_flow_run(
            wait_for_input=DecisionForm.with_initial_data(
                description=decision_markdown(blockers, run_id),
                step=first.step_id,
                action="skip" if first.kind == "manual" else "retry",
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


def decision_markdown(blockers: list[Blocker], run_id: str) -> str:
    """The evidence above the form: every blocked step, what happened there, what to try."""
    parts = []
    for b in blockers:
        code = "unknown" if b.exit_code is None else b.exit_code
        parts.append(
            f"## Blocked at step `{b.step_id}` ({b.kind})\n\n"
            f"**Command:** `{b.command}`  \n**Exit code:** {code}\n\n"
            f"**What happened:** {b.summary}\n\n**Suggested action:** {b.suggested_action}\n"
        )
    several = (
        f"{len(blockers)} steps are blocked; every other step that could run has run. One decision per step: "
        "name the step in the form, and the run asks again for the others.\n\n"
        if len(blockers) > 1
        else ""
    )
    return (
        "\n".join(parts) + "\n" + several
        + "Choose *retry* (optionally with an edited command), *skip* (go on without this step) or *abort*. "
        f"From a shell: `autodev resume {run_id} --step STEP --action retry|skip|abort [--command CMD]`."
    )
