"""What every part of the run engine works with: the plan, the run's state, the policy, the clock
and the ids, the step progress, the budgets, the secrets' redactors; and the one way a run
blocks. `RunEngine` (`machine.py`) is this plus its behaviours: failures, decisions, restore."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime

from autodev.core.agents import step_limits
from autodev.core.budget import BudgetKeeper
from autodev.core.engine.effects import Effects, Note, Policy
from autodev.core.engine.inputs import AttemptEnded
from autodev.core.engine.scheduling import Progress
from autodev.core.engine.state import RunState
from autodev.core.events import BreakerTripped, RunBlocked
from autodev.core.models import Blocker, Plan, Step, StepDefaults, StepStatus, utcnow
from autodev.core.redact import Redactor
from autodev.core.session import QueueEntry


def new_queue_id() -> str:
    return uuid.uuid4().hex[:12]


class EngineParts:
    def __init__(
        self,
        plan: Plan,
        state: RunState,
        policy: Policy,
        clock: Callable[[], datetime] = utcnow,
        new_id: Callable[[], str] = new_queue_id,
        environ: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
    ):
        self.plan = plan
        self.state = state
        self.policy = policy
        self.clock = clock
        self.new_id = new_id
        self.progress = Progress(plan, state)
        self.budget = BudgetKeeper(plan, state.doc.spent)
        self.secrets = dict(secrets or {})  # the plan's secrets and its agents' API keys, by name: never stored
        self.redactors = {s.id: Redactor.from_env(environ or {}, s.env, known=self.secrets.values()) for s in plan.steps}
        self.redact_all = Redactor([secret for r in self.redactors.values() for secret in r.secrets])
        self.baselines = {s.baseline for s in plan.steps if s.baseline}  # steps whose output a check compares with
        self._limits: dict[str, StepDefaults] = {}

    @property
    def run_id(self) -> str:
        return self.state.run_id

    @property
    def running(self) -> dict[str, QueueEntry]:
        return self.state.running

    def limits(self, step: Step) -> StepDefaults:
        """The step's clocks and budgets: its own over the plan's defaults, and
        AUTODEV_STALL_TIMEOUT_S over the plan's default stall timeout."""
        found = self._limits.get(step.id)
        if found is None:
            found = self._limits[step.id] = step_limits(self.plan, step, self.policy.stall_timeout_s)
        return found

    def waiting_on(self) -> list[Blocker]:
        """The blocker that stopped each blocked step (its newest), in plan order."""
        newest = {b.step_id: b for b in self.state.doc.blockers if b.stops_the_run}
        unknown = "its blocker was not recorded (the orchestrator that blocked it died first)"
        return [
            newest.get(sid)
            or Blocker(step_id=sid, command=self.plan.step(sid).command, exit_code=None, summary=unknown, kind="stall",
                       suggested_action=f"read the step's log, then retry or skip it (`autodev resume {self.run_id} --step {sid}`)",
                       ts=self.clock())
            for sid in self.progress.blocked_steps
        ]  # fmt: skip

    def _ended(self, ended: AttemptEnded) -> Effects:
        """What an attempt's end means (the engine's own, `machine.py`; a left attempt's too)."""
        raise NotImplementedError

    def block(self, blocker: Blocker, status: StepStatus, evidence: list[str], out: Effects) -> None:
        """Record the blocker that stopped the run at a step, and announce it (events, log)."""
        self.state.doc.blockers.append(blocker)
        notice = RunBlocked(
            step=blocker.step_id, command=blocker.command, exit_code=blocker.exit_code, status=status, reason=blocker.kind,
            summary=blocker.summary, suggested_action=blocker.suggested_action, evidence=evidence,
        )  # fmt: skip
        if blocker.kind == "breaker":
            out.events.append(BreakerTripped(**notice.model_dump(), threshold=self.policy.breaker_threshold))
        out.events.append(notice)
        text = f"run blocked ({blocker.kind}) at step {blocker.step_id}: {blocker.summary}; try: {blocker.suggested_action}"
        out.notes.append(Note("error", text))
