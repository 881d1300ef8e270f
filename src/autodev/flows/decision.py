"""A person's decision on a blocked run: the pause with its form in the Prefect UI, and its text.

The form is the core `Decision` model (`src/autodev/core/session.py`) as a Prefect `RunInput`, the
evidence in its command field's description; `autodev resume` sends the same fields.
"""

from __future__ import annotations

import logging
import math

from prefect import pause_flow_run, runtime
from prefect.client.orchestration import get_client
from prefect.exceptions import FlowPauseTimeout
from prefect.input import RunInput
from prefect.states import Running
from pydantic import Field, create_model

from autodev.core.engine.loop import Decider
from autodev.core.models import Blocker
from autodev.core.session import Decision
from autodev.flows.recorder import StoreRecorder

DecisionForm = RunInput.subclass_from_base_model_type(Decision)


class PausedForDecision(Decider):
    """A person's decision through a pause of the flow run: its form in the Prefect UI, or
    `autodev resume`. While it waits, the recorder's lease thread says the process is alive."""

    def __init__(self, recorder: StoreRecorder, timeout_s: float):
        self.recorder = recorder
        self.timeout_s = timeout_s

    def decide(self, blockers: list[Blocker], run_id: str, timeout_s: float | None = None) -> Decision | None:
        self.recorder.paused = True
        try:
            if timeout_s is None:
                return ask_for_decision(blockers, run_id, self.timeout_s, self.recorder.logger)
            return ask_for_decision(blockers, run_id, timeout_s, self.recorder.logger, waiting=True)
        finally:
            self.recorder.paused = False


def ask_for_decision(
    blockers: list[Blocker], run_id: str, timeout_s: float, logger: logging.Logger | logging.LoggerAdapter, waiting: bool = False,
) -> Decision | None:  # fmt: skip
    """Pause the flow run until a person decides on one of the blocked steps (Prefect UI or
    `autodev resume`), or None when `timeout_s` passes first (the run stays blocked and can be
    resumed later; or, `waiting` for a provider's limit, the wait is over). The form starts on
    the first blocked step."""
    first = blockers[0]
    try:
        answer = pause_flow_run(
            wait_for_input=decision_form(blockers, run_id).with_initial_data(
                step=first.step_id,
                action="skip" if first.kind == "manual" else "retry",
            ),
            timeout=max(1, math.ceil(timeout_s)),
            poll_interval=1 if waiting else max(1, min(10, int(timeout_s // 4) or 1)),  # a wait ends on time, to the second
        )
        return Decision.model_validate(answer.model_dump(include=set(Decision.model_fields)))
    except FlowPauseTimeout:
        back_to_running("the wait for a limit is over" if waiting else "no decision in time")
        if not waiting:
            logger.warning("no decision within %ss: the run stays blocked; `autodev resume %s --action ...` continues it", timeout_s, run_id)
        return None


def back_to_running(message: str) -> None:
    """After a pause timed out: Prefect would fail the flow run as "never resumed"; take it back
    to Running so the run ends with its own state, message and report."""
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(runtime.flow_run.id, Running(message=message), force=True)


def decision_form(blockers: list[Blocker], run_id: str) -> type[RunInput]:
    """The form, with the whole evidence of each blocked step in its command field's description.
    (The UI gives a form's own description only the height its fields leave free, and cut the
    evidence there mid-sentence; a field's description is shown whole, the form scrolling.)"""
    described = Field(None, description=decision_text(blockers, run_id))
    return create_model("DecisionForm", __base__=DecisionForm, command=(str | None, described))


def decision_text(blockers: list[Blocker], run_id: str) -> str:
    """Every blocked step: what happened there, what to try, its command; then the form's use."""
    several = f"{len(blockers)} steps are blocked, one decision each (name the step below). " if len(blockers) > 1 else ""
    evidence = " ".join(
        f"{b.step_id} is blocked ({b.kind}): {b.summary.rstrip('.')}. Try: {b.suggested_action.rstrip('.')}. "
        f"Its command: {b.command.rstrip('.')}" for b in blockers
    )  # fmt: skip
    return (
        f"{several}{evidence}. To retry with another command instead of the plan's, give it here. "
        f"From a shell: autodev resume {run_id} --step STEP --action retry|skip|abort [--command CMD]"
    )
