"""What a person's decision on a blocked run changes: retry the step (with a new command,
maybe), skip it, or abort the run."""

from __future__ import annotations

from autodev.core.engine.effects import Effects, Note
from autodev.core.engine.state import Breaker
from autodev.core.engine.waits import LimitWaits
from autodev.core.events import RunResumed
from autodev.core.models import Plan
from autodev.core.session import Decision, Intervention


class DecisionHandling(LimitWaits):
    def _decide(self, decision: Decision) -> Effects:
        """Carry out a decision on a blocked step, or one waiting for its provider's limit
        (`decision.step`, default the first). With no step blocked (the watchdog blocked the run),
        retry and skip go on from the first unfinished step and abort ends the run."""
        blocked = self.progress.blocked_steps + self.waiting_steps()
        if decision.step is not None and decision.step not in blocked:
            listed = ", ".join(blocked) or "none"
            return Effects(notes=[Note("error", f"decision on {decision.step} ignored: it is not blocked (blocked: {listed})")])
        step_id = decision.step or (blocked[0] if blocked else None)
        if step_id is not None:
            self._wait_over(step_id)  # a person ends its wait, and its waits in a row start afresh
            self._past_limit(step_id)
        out = Effects(status="running", advice="due")
        self.state.sandbox_lost = False  # a person decided: the engine is back, or they say so
        if decision.action == "retry":
            self._retry(step_id, decision.command, out)
        elif decision.action == "skip" and step_id is not None:
            self.progress.waive(step_id)
            out.step_states = {step_id: "skipped"}
        elif decision.action == "abort":
            rest = self.progress.abort(step_id)
            out.step_states = {**({step_id: "failed"} if step_id else {}), **dict.fromkeys(rest, "skipped")}
        self._keep(decision, step_id, out)
        return out

    def _retry(self, step_id: str | None, command: str | None, out: Effects) -> None:
        """Run the step again, with its retries and the breaker afresh (one more budget's worth
        when a spent budget held it)."""
        self.state.breaker = Breaker()
        if step_id is None:
            return
        if any(b.step_id == step_id and b.kind == "budget" for b in self.waiting_on()):
            self.budget.grant(step_id, self.clock())
        self.progress.reopen(step_id)
        self.state.stalls[step_id] = 0
        self.state.round_start[step_id] = self.progress.attempts[step_id]
        out.step_states = {step_id: "pending"}
        if command and command.strip():
            out.plan = self._replace_command(step_id, command)

    def _keep(self, decision: Decision, step_id: str | None, out: Effects) -> None:
        """The decision kept with the run (an intervention), announced and logged, secrets masked."""
        about = step_id or self.progress.phase
        mask = self.redactors[step_id].text if step_id in self.redactors else self.redact_all.text
        command, note = (mask(decision.command) if decision.command else None), mask(decision.note)
        self.state.doc.interventions.append(
            Intervention(step_id=about, action=decision.action, command=command, note=note, ts=self.clock())
        )
        out.events.append(RunResumed(step_id=about, action=decision.action, command=command, note=note))
        with_command = f" with `{command}`" if command else ""
        if step_id:
            said = f"decision on {about}: {decision.action}{with_command}"
        else:
            said = f"{decision.action}: no step is blocked, the run goes on from {about}"
        out.notes.append(Note("info", said))
        out.loop_status = f"decided on {about}: {decision.action}"

    def _replace_command(self, step_id: str, command: str) -> Plan:
        """The plan with this step's command replaced; an agent step becomes a command step."""
        replaced = {"kind": "command", "run": command, "instruction": None, "agent_command": None, "agent": None}
        steps = [s.model_copy(update=replaced) if s.id == step_id else s for s in self.plan.steps]
        self.plan = self.progress.plan = self.plan.model_copy(update={"steps": steps})
        self._limits.clear()
        return self.plan
