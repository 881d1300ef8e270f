"""The typed events: one model per event, read as they are by the notification automations."""

from __future__ import annotations

import re

from autodev.core.events import InsightChanged, RunBlocked, RunEvent, RunFinished, StepNotice
from autodev.flows.automations import REACTIVE, payload_template


def all_events(base: type[RunEvent] = RunEvent) -> list[type[RunEvent]]:
    found = []
    for sub in base.__subclasses__():
        found += [sub, *all_events(sub)]
    return found


def test_every_event_has_its_own_autodev_name():
    named = [e for e in all_events() if "name" in vars(e)]
    assert {e.name for e in named} >= {"autodev.run.blocked", "autodev.command.failed", "autodev.breaker.tripped"}
    assert len({e.name for e in named}) == len(named)
    assert all(e.name.startswith("autodev.") for e in named)


def test_the_notifications_read_only_what_their_events_carry():
    read = set(re.findall(r"p\.get\('(\w+)'", payload_template("headline", "http://ui")))
    assert {"step", "summary", "suggested_action"} <= read
    for _, event, _, _ in REACTIVE:
        carried = set(event.model_fields)
        if issubclass(event, StepNotice):  # `reason` falls back to `status`; `tasks` is a run's end's
            assert read - {"reason", "tasks"} <= carried, event.name
        elif event is RunFinished:  # the morning report
            assert {"summary", "suggested_action", "tasks", "reason", "status"} <= carried
        else:
            assert event is InsightChanged and {"summary", "suggested_action"} <= carried


def test_a_payload_is_the_models_fields():
    blocked = RunBlocked(step="s", command="c", exit_code=None, status="blocked", reason="watchdog", summary="x", suggested_action="y")
    assert blocked.payload()["reason"] == "watchdog" and blocked.payload()["exit_code"] is None
    assert RunBlocked.model_validate(blocked.payload()) == blocked
