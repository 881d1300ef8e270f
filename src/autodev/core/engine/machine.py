"""The run engine: a state machine over one run's state, `handle(input) -> Effects`.

The loop (`autodev/core/engine/loop.py`) hands it what happens to the run: it begins or resumes,
an attempt ended, a person decided, the advice was made anew, the loop beat. The engine updates
the run's state (`RunState`, whose `doc` the store keeps) and answers with the effects to carry
out: the attempts to store and to start, the events, the log lines. After every input it starts
what has become ready. What a failure means is decided by the rules (`rules.py`) in priority
order (`failures.py`); what a person's decision changes is in `decisions.py`, how a run picks up
in `restore.py`. The clock and the ids come from outside, so tests fix both. It imports nothing
from Prefect, Docker, a database or the layers above the core (`tests/test_project.py`).
"""

from __future__ import annotations

from autodev.core.agents import agent_call, agent_template, preset_of
from autodev.core.commands import StepAttempt
from autodev.core.engine.decisions import DecisionHandling
from autodev.core.engine.effects import AttemptSpec, Effects, Note
from autodev.core.engine.failures import FailureHandling
from autodev.core.engine.inputs import (
    AdviceReady,
    AttemptEnded,
    Beat,
    Begin,
    BranchEnded,
    DecisionTaken,
    Finish,
    Restore,
    RunInput,
    WaitForDecision,
    Wake,
)
from autodev.core.engine.restore import Restoring
from autodev.core.engine.rules import Hold, Start, hold_for
from autodev.core.events import CommandFinished, InsightChanged
from autodev.core.insights import changed as insight_changed
from autodev.core.models import Blocker, Step
from autodev.core.secrets import step_env
from autodev.core.session import Heartbeat, LastCommandResult, LLMCall, Pause, QueueEntry


class RunEngine(FailureHandling, DecisionHandling, Restoring):
    """One run's decisions (see the module's docstring); `state` is the run's, and only this writes it."""

    def handle(self, event: RunInput) -> Effects:
        """What `event` means for the run; then whatever it made ready is started."""
        match event:
            case Begin() | Wake():
                out = Effects()
            case AttemptEnded():
                out = self._ended(event)
            case DecisionTaken():
                out = self._decide(event.decision)
            case Restore():
                return self._restore(event)  # nothing starts before the decision it may come with
            case WaitForDecision():
                return self._wait_for_decision()
            case AdviceReady():
                return self._advised(event)
            case Beat():
                return self._beat(event)
            case BranchEnded():
                self.state.doc.repository = event.repository
                return Effects()
            case Finish():
                self.state.doc.phase = self.progress.phase
                return Effects(status=self.progress.run_status)
        out.merge(self._dispatch())
        self.state.doc.phase = self.progress.phase
        return out

    @property
    def waits_for_a_person(self) -> bool:
        """Nothing runs and a step is blocked: only a decision lets the run go on."""
        return not self.state.doc.queue and self.progress.blocked

    # --- starting steps ----------------------------------------------------------------
    def _dispatch(self) -> Effects:
        """Start the steps whose dependencies are done, up to the plan's max_parallel; a step a
        gate holds (a spent budget, no agent) is left to a person and takes no slot."""
        out = Effects()
        if self.state.stale & self.running.keys() or self.state.sandbox_lost:
            return out  # a feedback round waits for the checks on the old code; a lost sandbox for a person
        waiting = self._held_by_waits()
        while (free := self.plan.max_parallel - len(self.state.doc.queue)) > 0:
            ready = self.progress.ready(set(self.running) | waiting, limit=free)
            if not ready:
                break
            for step in ready:
                held = hold_for(self._start_of(step))
                if held is not None:
                    out.merge(self._hold(step, held))
                else:
                    out.started.append(self._start(step))
                    out.notes += [note] if (note := self._session_note(step, out.started[-1].attempt)) else []
        return out

    def _start_of(self, step: Step) -> Start:
        return Start(
            step=step, run_id=self.run_id, budget_spent=self.budget.over(step, self.clock(), self.state.waiting_since),
            has_agent=agent_template(self.plan, step) is not None or self.policy.has_model,
            files=", ".join(step.files or self.state.doc.todo_files or []) or "the files the instruction names",
            workspace=self.state.workspace,
        )  # fmt: skip

    def _start(self, step: Step) -> AttemptSpec:
        self._wait_over(step.id)
        attempt = self.progress.attempts[step.id] + 1
        self.progress.attempts[step.id] = attempt
        entry = QueueEntry(queue_id=self.new_id(), step_id=step.id, attempt=attempt, dispatched_at=self.clock())
        self.state.doc.queue.append(entry)
        evidence = self.state.doc.evidence.get(step.id)
        command = step.run if step.kind == "command" else self._agent_command(step, attempt, evidence)
        preset = preset_of(self.plan, step)
        return AttemptSpec(
            step=step, attempt=attempt, queue_id=entry.queue_id, limits=self.limits(step), command=command, evidence=evidence,
            redactor=self.redactors[step.id], env=step_env(self.plan, step, self.secrets),
            agent_stream=preset.stream if preset else None,
            baseline_output=self.state.baseline_outputs.get(step.baseline or "", ""),
            todo_files=tuple(self.state.doc.todo_files or ()), kept_home=(preset.sessions,) if preset and preset.sessions else (),
        )  # fmt: skip

    def _hold(self, step: Step, held: Hold) -> Effects:
        """The run blocks at a step that may not start, for a person to decide on."""
        mask = self.redactors[step.id].text
        blocker = Blocker(step_id=step.id, command=mask(step.command), exit_code=None, summary=held.summary,
                          suggested_action=mask(held.action), kind=held.kind, ts=self.clock())  # fmt: skip
        self.progress.finish(step.id, "blocked")
        out = Effects(step_states={step.id: "blocked"}, advice="forced")
        self.block(blocker, "blocked", [], out)
        return out

    # --- an attempt's end --------------------------------------------------------------
    def _ended(self, ended: AttemptEnded) -> Effects:
        """What an attempt's end means; nothing when it is no news (not the running attempt)."""
        entry = self.running.get(ended.step_id)
        if entry is None or entry.attempt != ended.attempt:
            return Effects()
        self.state.dequeue(entry.queue_id)
        step, result = self.plan.step(ended.step_id), ended.result
        stored = StepAttempt(run_id=self.run_id, step_id=step.id, attempt=ended.attempt,
                             command=self.redactors[step.id].text(step.command), result=result)  # fmt: skip
        if step.id in self.baselines:
            self.state.baseline_outputs[step.id] = result.output_tail
        if step.id in self.state.stale:  # it ran on code a feedback round is replacing: kept, not counted
            self.state.stale.discard(step.id)
            note = Note("info", f"step {step.id} ended ({result.status}) on the code before the feedback round: it runs again")
            return Effects(attempts=[stored], notes=[note], loop_status=f"set aside {step.id}")
        if self._resume_refused(step, stored):
            return self._start_afresh(step, stored)
        self._record_session(step, result)
        if result.refused:
            self.state.doc.refused[step.id] = list(dict.fromkeys([*self.state.doc.refused.get(step.id, []), *result.refused]))
        out = self._failed(step, stored) if result.status != "succeeded" else self._succeeded(step, stored)
        self._spend([*ended.model_calls, *([agent_call(step.id, result.agent)] if result.agent else [])], out)
        self.budget.add_time(step.id, result.duration_s)
        if result.agent is not None and result.agent.changed_nothing and result.status == "succeeded":
            out.notes.append(Note("warning", f"agent step {step.id}: {result.agent.agent} succeeded but changed nothing"))
        out.events.insert(0, CommandFinished(step=step.id, command=stored.command, exit_code=result.exit_code,
                                             status=result.status, duration_s=round(result.duration_s, 3)))  # fmt: skip
        self.state.doc.record_result(LastCommandResult(text=result.output_tail[-2000:], exit_code=result.exit_code,
                                                       ts=result.finished_at, step_id=step.id))  # fmt: skip
        out.loop_status = f"handled {step.id}: {result.status}"
        out.advice = "forced" if out.advice == "forced" or self.progress.finished else "due"
        return out

    def _succeeded(self, step: Step, stored: StepAttempt) -> Effects:
        result = stored.result
        changed_nothing = result.agent is not None and result.agent.changed_nothing
        repeats = step.kind == "agent" and self.state.round_repeats(step.id, result.round_digest, changed_nothing)
        if not repeats:  # a round that changed nothing new is no success for the breaker
            self.state.breaker.record(None, self.policy.breaker_threshold)
        self._past_limit(step.id)
        self.progress.finish(step.id, "succeeded")
        return Effects(attempts=[stored], step_states={step.id: "succeeded"})

    def _spend(self, calls: list[LLMCall], out: Effects) -> None:
        """Model calls: recorded, and counted against the budgets."""
        for call in calls:
            self.budget.add(call)
        out.model_calls += calls

    # --- the person, the advice, the heartbeat -----------------------------------------
    def _wait_for_decision(self) -> Effects:
        """The run waits for a person's decision on its blocked steps (one decision each), or only
        for steps' limits to reset (a person may end those waits too)."""
        blocked = self.progress.blocked_steps
        if not blocked:  # only waits (or a wait that ended a moment ago: the loop wakes it next)
            wake = self.next_wake
            waiting = f"waiting for a limit to reset: {', '.join(self.waiting_steps())}" + (f" until {wake:%H:%M:%S} UTC" if wake else "")
            self.state.doc.phase = waiting
            return Effects(loop_status=waiting)
        waiting = f"waiting for a decision on {', '.join(blocked)}"
        self.state.doc.phase = waiting
        self.state.doc.pauses.append(Pause(kind="decision", step_id=blocked[0], ts=self.clock()))
        return Effects(status="blocked", loop_status=waiting)

    def _advised(self, advice: AdviceReady) -> Effects:
        """The advice made anew: kept, and announced when it changed (or its confidence dropped)."""
        previous, insight = self.state.doc.next_actions, advice.insight
        self.state.doc.next_actions, self.state.doc.advice = insight, advice.lines
        out = Effects()
        self._spend(advice.model_calls, out)
        if insight_changed(previous, insight, self.policy.confidence_drop):
            top = insight.recommendations[0] if insight.recommendations else None
            out.events.append(InsightChanged(
                summary=top.reason if top else "", suggested_action="; ".join(advice.lines),
                recommendations=insight.recommendations, confidence=insight.confidence,
                previous_confidence=previous.confidence if previous else None,
            ))  # fmt: skip
        return out

    def _beat(self, beat: Beat) -> Effects:
        self.state.doc.orchestrator_heartbeat = Heartbeat(ts=self.clock(), loop_status=beat.loop_status)
        seen, known = beat.last_output_at, self.state.doc.last_output_at
        if seen is not None and (known is None or seen > known):
            self.state.doc.last_output_at = seen
        return Effects()
