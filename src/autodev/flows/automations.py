"""Prefect automations that turn autodev's events into webhook notifications (and crash zombies).

`autodev automations apply --webhook-url URL` saves the URL in a Prefect Webhook block
(`autodev-notifications`) and creates or updates, by name, one automation per alarm. Applying
twice changes nothing. Enforcement (kill, retry, block) stays in autodev's own code: these only
tell people, and mark flow runs whose process died as Crashed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import cast
from uuid import UUID

from prefect.automations import Automation
from prefect.blocks.webhook import Webhook
from prefect.client.schemas.objects import StateType
from prefect.events.actions import CallWebhook, ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.exceptions import ObjectNotFound

from autodev.core.events import (
    BreakerTripped,
    HeartbeatBeat,
    InsightChanged,
    RunBlocked,
    RunEvent,
    RunFinished,
    StepStalled,
    StepWaiting,
)  # fmt: skip
from autodev.core.recovery import HEARTBEAT_LATE_S

WEBHOOK_BLOCK = "autodev-notifications"
FLOW_RUN_HEARTBEAT_S = 30  # PREFECT_FLOWS_HEARTBEAT_FREQUENCY to set for flow processes (minimum 30)


def payload_template(headline: str, ui_url: str) -> str:
    """The webhook body (a Jinja template Prefect fills from the event): JSON with the evidence,
    a link to the run in the UI, and a Slack-compatible `text`."""
    prelude = (
        "{% set run = event.resource.id | replace('prefect.flow-run.', '') %}"
        f"{{% set link = '{ui_url}/runs/flow-run/' ~ run %}}"
        "{% set p = event.payload %}"
    )
    fields = {
        "event": "event.event",
        "run": "run",
        "run_id": "event.resource.get('autodev.run_id', '')",
        "project": "event.resource.get('autodev.project', '')",
        "step": "p.get('step')",
        "command": "p.get('command')",
        "exit_code": "p.get('exit_code')",
        "reason": "p.get('reason') or p.get('status')",
        "summary": "p.get('summary')",
        "suggested_action": "p.get('suggested_action')",
        "tasks": "p.get('tasks')",
        "link": "link",
        "text": (
            f"'{headline}: ' ~ event.resource.get('autodev.project', '') ~ ((' step ' ~ p.get('step')) if p.get('step') else '') ~ "
            "' - ' ~ (p.get('summary') or '') ~ ' | try: ' ~ (p.get('suggested_action') or 'see the run') ~ ' | ' ~ link"
        ),
    }
    return prelude + "{" + ", ".join(f'"{key}": {{{{ ({expr}) | tojson }}}}' for key, expr in fields.items()) + "}"


# (automation name, autodev event, notification headline, description)
REACTIVE: list[tuple[str, type[RunEvent], str, str]] = [
    ("autodev: run blocked", RunBlocked, "autodev run blocked",
     "A run stopped dispatching commands (stall, failure breaker or watchdog) and waits for a person."),
    ("autodev: step stalled", StepStalled, "autodev step stalled",
     "A command printed nothing new for its stall timeout and was killed."),
    ("autodev: step waiting", StepWaiting, "autodev step waiting for a provider limit",
     "An agent hit its provider's usage or rate limit: the step waits until it resets (the summary says until when)."),
    ("autodev: breaker tripped", BreakerTripped, "autodev failure breaker tripped",
     "The same failure happened several times in a row; the run is blocked."),
    ("autodev: decision support", InsightChanged, "autodev decision support",
     "autodev's next-step advice for a run changed, or its confidence dropped."),
    ("autodev: run finished", RunFinished, "autodev run finished",
     "A run ended: per task, what succeeded and what needs a person (the morning report)."),
]


def definitions(webhook_id: UUID, ui_url: str, heartbeat_late_s: float = HEARTBEAT_LATE_S) -> list[Automation]:
    """Every automation autodev applies; each notifies through the webhook block `webhook_id`."""

    def notify(headline: str) -> CallWebhook:
        return CallWebhook(block_document_id=webhook_id, payload=payload_template(headline, ui_url))

    reactive = [
        reactive_automation(name, event, description, notify(headline)) for name, event, headline, description in REACTIVE
    ]
    return [
        *reactive,
        heartbeat_late_automation(heartbeat_late_s, notify("autodev orchestrator heartbeat late")),
        zombie_automation(notify("autodev flow run crashed (no heartbeat)")),
    ]


def reactive_automation(name: str, event: type[RunEvent], description: str, notification: CallWebhook) -> Automation:
    """Notify each time a flow run emits `event`."""
    return Automation(
        name=name,
        description=description,
        trigger=EventTrigger(
            expect={event.name}, match={"prefect.resource.id": "prefect.flow-run.*"}, posture=Posture.Reactive, threshold=1
        ),
        actions=[notification],
    )


def heartbeat_late_automation(heartbeat_late_s: float, notification: CallWebhook) -> Automation:
    """Notify when a running run's orchestrator wrote no heartbeat for `heartbeat_late_s` seconds."""
    return Automation(
        name="autodev: orchestrator heartbeat late",
        description=f"A running run recorded no heartbeat for {heartbeat_late_s:g}s.",
        trigger=EventTrigger(
            after={HeartbeatBeat.name},
            expect={HeartbeatBeat.name, RunFinished.name, RunBlocked.name, StepWaiting.name},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=heartbeat_late_s),
        ),
        actions=[notification],
    )


def zombie_automation(notification: CallWebhook) -> Automation:
    """Mark Crashed, and notify, a flow run whose process stopped sending Prefect's flow-run heartbeats."""
    return Automation(
        name="autodev: zombie flow run",
        description=(
            "Prefect's recipe: a flow run whose process stopped sending flow-run heartbeats is marked "
            f"Crashed (flow processes need PREFECT_FLOWS_HEARTBEAT_FREQUENCY={FLOW_RUN_HEARTBEAT_S})."
        ),
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match={"prefect.resource.id": "prefect.flow-run.*"},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=3 * FLOW_RUN_HEARTBEAT_S),
        ),
        actions=[
            ChangeFlowRunState(state=StateType.CRASHED, message="No flow-run heartbeat for three beats."),
            notification,
        ],
    )


def apply(webhook_url: str, ui_url: str, heartbeat_late_s: float = HEARTBEAT_LATE_S) -> list[str]:
    """Save the webhook block and create or update every automation; returns their names.

    `heartbeat_late_s` (at least 10, Prefect's minimum for proactive triggers) is there for tests."""
    webhook = Webhook(
        method="POST", url=webhook_url, headers={"Content-Type": "application/json"}, allow_private_urls=True
    )
    webhook_id = cast(UUID, webhook.save(WEBHOOK_BLOCK, overwrite=True))
    names = []
    for automation in definitions(webhook_id, ui_url, heartbeat_late_s):
        try:
            existing = cast(Automation, Automation.read(name=automation.name))
        except (ObjectNotFound, ValueError):
            existing = None
        if existing is None:
            automation.create()
        else:
            automation.id = existing.id
            automation.update()
        names.append(automation.name)
    return names
