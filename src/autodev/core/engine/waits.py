"""Steps that wait for their provider's usage or rate limit to reset (`rules.py`'s LimitReached).

A waiting step is not finished and not blocked: it is held back from starting until its wait
ends (`doc.waits`), then runs again with its retries afresh. Steps of the same provider (the same
agent CLI, or the built-in agent's model) are held too, since they would hit the same limit; the
others go on. The waits in a row of one step count from the first: past AUTODEV_LIMIT_WAIT_MAX_S
the step blocks for a person instead. The time waited is not work (`wall_s` budgets), and a limit
is no failure for the breaker. A person ends a wait early with a decision (retry, skip, abort).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from autodev.core.agents import preset_of
from autodev.core.commands import StepAttempt
from autodev.core.diagnosis import Diagnosis
from autodev.core.engine.base import EngineParts
from autodev.core.engine.effects import Effects, Note
from autodev.core.events import StepWaiting
from autodev.core.limits import NO_RESET_WAIT_S, LimitHit
from autodev.core.models import Blocker, Step
from autodev.core.session import LimitWait

SOONEST_S = 5.0  # a reset time in the past (or now): try again this much later, not at once


class LimitWaits(EngineParts):
    def _wait_for(self, step: Step, hit: LimitHit) -> LimitWait:
        """The wait a limit asks for: until its reset (NO_RESET_WAIT_S when none is said, SOONEST_S
        at the soonest), counted from the first of this step's waits in a row."""
        now = self.clock()
        until = max(hit.resets_at or now + timedelta(seconds=NO_RESET_WAIT_S), now + timedelta(seconds=SOONEST_S))
        since = self.state.doc.limit_since.setdefault(step.id, now)
        return LimitWait(until=until, began=now, since=since, provider=provider_of(self.plan, step), line=hit.line)

    def _wait_fits(self, wait: LimitWait) -> bool:
        return (wait.until - wait.since).total_seconds() <= self.policy.limit_wait_max_s

    def _start_waiting(self, step: Step, stored: StepAttempt, wait: LimitWait) -> Effects:
        """Hold the step until its provider's limit resets; it runs again then, its retries afresh."""
        out = Effects(attempts=[stored])
        self.state.doc.waits[step.id] = wait
        self.state.waiting_since = self.state.waiting_since or self.clock()
        self.state.round_start[step.id] = stored.attempt
        self.state.stalls[step.id] = 0
        seconds = max(0.0, (wait.until - self.clock()).total_seconds())
        summary = f"its provider's limit ({wait.line}): waiting until {wait.until:%Y-%m-%d %H:%M:%S} UTC ({seconds:.0f}s)"
        action = f"nothing: it runs again then; to end the wait now, `autodev resume {self.run_id} --step {step.id} --action retry` (or skip, abort)"
        out.step_states[step.id] = "waiting"
        out.events.append(StepWaiting(step=step.id, command=stored.command, exit_code=stored.result.exit_code, status="waiting",
                                      attempt=stored.attempt, until=wait.until.isoformat(), summary=summary, suggested_action=action))  # fmt: skip
        held = sorted(self._held_by_waits() - {step.id})
        also = f"; {', '.join(held)} of the same provider wait too" if held else ""
        out.notes.append(Note("warning", f"step {step.id} waits for {summary}{also}; other steps go on"))
        return out

    def limit_diagnosis(self, step: Step, wait: LimitWait, diagnosis: Diagnosis) -> Diagnosis:
        """What a limit's blocker says, should the wait not fit: the figures, and what to do."""
        summary = (f"its provider's limit ({wait.line}) resets at {wait.until:%Y-%m-%d %H:%M:%S} UTC, "
                   f"{(wait.until - wait.since).total_seconds():.0f}s after it first stopped the step: past the longest wait "
                   f"(AUTODEV_LIMIT_WAIT_MAX_S, {self.policy.limit_wait_max_s:.0f}s)")  # fmt: skip
        action = f"wait until then and go on (`autodev resume {self.run_id} --step {step.id} --action retry`), or raise AUTODEV_LIMIT_WAIT_MAX_S"
        return dataclasses.replace(diagnosis, summary=summary, suggested_action=action)

    def _active_waits(self) -> dict[str, LimitWait]:
        """The waits not over yet, by step."""
        now = self.clock()
        return {sid: w for sid, w in self.state.doc.waits.items() if w.until > now}

    def _held_by_waits(self) -> set[str]:
        """Steps that may not start yet: those waiting, and the unstarted steps of their providers."""
        active = self._active_waits()
        if not active:
            return set()
        providers = {w.provider for w in active.values()}
        same = {s.id for s in self.plan.steps if s.kind == "agent" and provider_of(self.plan, s) in providers}
        return set(active) | same

    def _wait_over(self, step_id: str) -> None:
        """The step starts again (its wait is over, or a person ended it); once no step waits, the
        time some step waited is not work (waits that overlapped count once)."""
        if self.state.doc.waits.pop(step_id, None) is not None and not self.state.doc.waits and self.state.waiting_since:
            self.budget.add_wait((self.clock() - self.state.waiting_since).total_seconds())
            self.state.waiting_since = None

    def _past_limit(self, step_id: str) -> None:
        """The step got past its limit (it succeeded, or failed for another reason): its waits in a row end."""
        self.state.doc.limit_since.pop(step_id, None)

    @property
    def next_wake(self) -> datetime | None:
        """When the soonest wait ends (None: no step waits)."""
        return min((w.until for w in self._active_waits().values()), default=None)

    def waiting_on(self) -> list[Blocker]:
        """The blocked steps' blockers, then one for each step waiting for its provider's limit
        (what a person deciding while they wait sees)."""
        waits = [
            Blocker(step_id=sid, command=self.plan.step(sid).command, exit_code=None, kind="limit", ts=wait.began,
                    summary=f"waiting for its provider's limit until {wait.until:%H:%M:%S} UTC ({wait.line})",
                    suggested_action="nothing: it runs again then; retry ends the wait now, skip or abort give it up")
            for sid, wait in self._active_waits().items()
        ]  # fmt: skip
        return super().waiting_on() + waits

    def waiting_steps(self) -> list[str]:
        """The steps waiting now for their provider's limit, in plan order."""
        active = self._active_waits()
        return [s.id for s in self.plan.steps if s.id in active]


def provider_of(plan, step: Step) -> str:
    """What a step's model limit belongs to: its agent CLI (or CLI command), the built-in agent's model, or none."""
    if step.kind != "agent":
        return f"command:{step.id}"
    preset = preset_of(plan, step)
    return preset.name if preset else (step.agent_command or plan.agent_command or "builtin")
