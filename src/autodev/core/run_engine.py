"""The run engine: every decision of a run's loop, as plain code over typed data.

The plan flow (`src/autodev/flows/plan_flow.py`) starts commands and waits for them; this engine decides.
It answers four questions, and each answer is an `Outcome` with no side effect of its own:
- `dispatch()`: which steps start now, and which are left to a person;
- `on_result()`: what a step's result means: done, run again, sent back to its agent step, or
  the run blocked;
- `decide()`: what a person's decision changes;
- `restore()`: where a run recorded earlier picks up.

An Outcome (`src/autodev/core/outcomes.py`) holds the attempt to store, the step states it settles, the changes to the run's
metadata, the events to emit and the lines to log; the recorder (`src/autodev/flows/recorder.py`) carries it
out in the order the store needs. The engine owns the run's progress, the failure breaker, the
stall counts, the feedback rounds and their evidence. It imports nothing from Prefect, Docker,
the database, blocks, tasks or flows (`tests/test_project.py` checks it), so its behaviour is
tested in milliseconds (`tests/test_run_engine.py`).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from typing import Literal

from autodev.core.agent import agent_cli_command, failure_evidence
from autodev.core.agents import agent_call, agent_template, preset_of, step_limits
from autodev.core.budget import BudgetKeeper
from autodev.core.diagnosis import diagnose, fingerprint
from autodev.core.events import (
    BreakerTripped,
    CommandFailed,
    CommandFinished,
    FeedbackRound,
    RunBlocked,
    RunResumed,
    StepStalled,
)
from autodev.core.models import Blocker, CommandResult, Plan, Step, StepAttempt, StepDefaults, StepStatus, utcnow
from autodev.core.outcomes import Dispatch, Note, Outcome, Rules
from autodev.core.policy import AgentRounds, FailureBreaker, judge, next_move
from autodev.core.recovery import left_result
from autodev.core.redact import Redactor
from autodev.core.scheduling import Progress
from autodev.core.secrets import step_env
from autodev.core.session import (
    Decision,
    Intervention,
    LastCommandResult,
    LeftAttempt,
    LLMCall,
    MetadataChanges,
    Pause,
    QueueEntry,
    SessionMetadata,
)

NO_AGENT = "no coding agent for this step: no model is configured (AUTODEV_LLM_MODEL) and it has no agent or agent_command"


class RunEngine:
    """One run's decisions: progress, breaker, stalls, feedback rounds, blockers."""

    def __init__(
        self,
        plan: Plan,
        run_id: str,
        workspace: str,
        rules: Rules,
        metadata: SessionMetadata | None = None,
        environ: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
    ):
        meta = metadata or SessionMetadata()
        self.plan = plan
        self.run_id = run_id
        self.workspace = workspace
        self.rules = rules
        self.progress = Progress(plan)
        self.breaker = FailureBreaker(rules.breaker_threshold)
        self.stalls: dict[str, int] = {s.id: 0 for s in plan.steps}  # stalled attempts in the current round
        self.running: dict[str, QueueEntry] = {}
        self.round_start: dict[str, int] = {}  # attempts a step had when its round began (feedback, continued run)
        self.stale: set[str] = set()  # running steps whose result a feedback round made outdated
        self.blockers: list[Blocker] = list(meta.blockers)
        self.evidence: dict[str, str] = dict(meta.evidence)  # agent step -> the failed check that sent the run back
        self.feedback_rounds = meta.feedback_rounds
        self.todo_files: list[str] = list(meta.todo_files or [])
        self._queued_before = [q.queue_id for q in meta.queue]  # entries a dead process left behind
        self._skipped_by_a_person = {i.step_id for i in meta.interventions if i.action == "skip"}
        self.secrets = dict(secrets or {})  # the plan's secrets and its agents' API keys, by name: never stored
        self.redactors = {s.id: Redactor.from_env(environ or {}, s.env, known=self.secrets.values()) for s in plan.steps}
        self.redact_all = Redactor([secret for r in self.redactors.values() for secret in r.secrets])
        self._limits: dict[str, StepDefaults] = {}
        self.sandbox_lost = False  # a result said the sandbox went away (the engine stopped)
        self._baseline_steps = {s.baseline for s in plan.steps if s.baseline}
        self.outputs: dict[str, str] = {}  # the last output of each baseline step
        self.budget = BudgetKeeper(plan, meta.spent)
        self.rounds = AgentRounds()

    # --- queries ---------------------------------------------------------------------
    def limits(self, step: Step) -> StepDefaults:
        """The step's clocks and budgets: its own over the plan's defaults, and
        AUTODEV_STALL_TIMEOUT_S over the plan's default stall timeout."""
        found = self._limits.get(step.id)
        if found is None:
            found = self._limits[step.id] = step_limits(self.plan, step, self.rules.stall_timeout_s)
        return found

    @property
    def waits_for_a_person(self) -> bool:
        """Nothing runs and a step is blocked: only a decision lets the run go on. (The loop
        asks this once nothing else could be dispatched.)"""
        return not self.running and self.progress.blocked

    def waiting_on(self) -> list[Blocker]:
        """The blocker that stopped each blocked step (its newest), in plan order."""
        newest = {b.step_id: b for b in self.blockers if b.stops_the_run}
        unknown = "its blocker was not recorded (the orchestrator that blocked it died first)"
        return [
            newest.get(sid)
            or Blocker(step_id=sid, command=self.plan.step(sid).command, exit_code=None, summary=unknown, kind="stall",
                       suggested_action=f"read the step's log, then retry or skip it (`autodev resume {self.run_id} --step {sid}`)",
                       ts=utcnow())
            for sid in self.progress.blocked_steps
        ]

    # --- what to dispatch --------------------------------------------------------------
    def dispatch(self) -> Outcome:
        """Start the steps whose dependencies are done, up to the plan's max_parallel; an agent
        step with nothing to run it (no model, no agent CLI) is left to a person instead."""
        out = Outcome()
        if self.stale & self.running.keys():
            return out  # a feedback round waits until the checks that ran on the old code are done
        if self.sandbox_lost:
            return out  # the engine went away: nothing can run until a person says it is back
        while (free := self.plan.max_parallel - len(self.running)) > 0:
            ready = self.progress.ready(set(self.running), limit=free)
            if not ready:
                break
            for step in ready:  # a step left to a person takes no slot: the search goes on
                if spent := self.budget.over(step):
                    go_on = f"`autodev resume {self.run_id} --step {step.id} --action retry` grants one more budget's worth"
                    out.merge(self._hold(step, spent, f"raise the plan's `budget`, or go on: {go_on}", "budget"))
                elif step.kind == "agent" and not agent_template(self.plan, step) and not self.rules.has_model:
                    out.merge(self._leave_to_a_person(step))
                else:
                    out.started.append(self._start(step))
        out.changes.queued += [d.entry for d in out.started]
        return out

    def _start(self, step: Step) -> Dispatch:
        attempt = self.progress.attempts[step.id] + 1
        self.progress.attempts[step.id] = attempt
        entry = QueueEntry(queue_id=uuid.uuid4().hex[:12], step_id=step.id, attempt=attempt, dispatched_at=utcnow())
        self.running[step.id] = entry
        evidence = self.evidence.get(step.id)
        cli = agent_template(self.plan, step)
        if step.kind == "command":
            command = step.run
        else:
            command = agent_cli_command(cli, step.instruction or "", evidence) if cli else None
        preset = preset_of(self.plan, step)
        return Dispatch(
            step, entry, self.limits(step), command, evidence, self.redactors[step.id], step_env(self.plan, step, self.secrets),
            preset.stream if preset else None,
        )

    def _leave_to_a_person(self, step: Step) -> Outcome:
        """An agent step with no agent: a person does the step by hand and says so with `skip`."""
        files = ", ".join(step.files or self.todo_files) or "the files the instruction names"
        mask = self.redactors[step.id].text
        action = (
            f"do it by hand: {mask((step.instruction or '').strip().rstrip('.'))}; edit {files} in {self.workspace}, then "
            f"skip this step to go on (`autodev resume {self.run_id} --action skip`), or set AUTODEV_LLM_MODEL and retry"
        )
        return self._hold(step, NO_AGENT, action, "manual")

    def _hold(self, step: Step, summary: str, action: str, kind: Literal["manual", "budget"]) -> Outcome:
        """The run blocks at a step that may not start, for a person to decide on."""
        blocker = Blocker(step_id=step.id, command=self.redactors[step.id].text(step.command), exit_code=None,
                          summary=summary, suggested_action=action, kind=kind, ts=utcnow())  # fmt: skip
        self.progress.finish(step.id, "blocked")
        out = Outcome(step_states={step.id: "blocked"}, advice="forced")
        self._block(blocker, "blocked", [], out)
        out.changes.phase = self.progress.phase
        return out

    # --- what a result means -----------------------------------------------------------
    def on_result(self, step_id: str, attempt: int, result: CommandResult) -> Outcome | None:
        """What a step's result means; None when it is no news (the attempt's task ended after
        its result was handled)."""
        entry = self.running.get(step_id)
        if entry is None or entry.attempt != attempt:
            return None
        del self.running[step_id]
        step = self.plan.step(step_id)
        command = self.redactors[step_id].text(step.command)  # what is stored and sent
        result = judge(step, result, self.outputs.get(step.baseline or "", ""))
        if step_id in self._baseline_steps:
            self.outputs[step_id] = result.output_tail
        stored = StepAttempt(run_id=self.run_id, step_id=step_id, attempt=attempt, command=command, result=result)
        if step_id in self.stale:  # it ran on code a feedback round is replacing: kept, not counted
            self.stale.discard(step_id)
            return Outcome(
                attempt=stored,
                changes=MetadataChanges(dequeued=[entry.queue_id]),
                notes=[Note("info", f"step {step_id} ended ({result.status}) on the code before the feedback round: it runs again")],
                loop_status=f"set aside {step_id}",
            )
        out = self._failed(step, stored) if result.status != "succeeded" else self._succeeded(step, stored)
        if result.agent is not None:
            out.model_calls.append(agent_call(step_id, result.agent))
        self.spend(out.model_calls, out)
        self.budget.add_time(step_id, result.duration_s)
        if result.agent is not None and result.agent.changed_nothing and result.status == "succeeded":
            out.notes.append(Note("warning", f"agent step {step_id}: {result.agent.agent} succeeded but changed nothing"))
        out.events.insert(
            0,
            CommandFinished(
                step=step_id, command=command, exit_code=result.exit_code, status=result.status,
                duration_s=round(result.duration_s, 3),
            ),
        )
        out.changes.dequeued.append(entry.queue_id)
        out.changes.results.append(
            LastCommandResult(text=result.output_tail[-2000:], exit_code=result.exit_code, ts=result.finished_at, step_id=step_id)
        )
        out.changes.phase = self.progress.phase
        out.loop_status = f"handled {step_id}: {result.status}"
        out.advice = "forced" if out.advice == "forced" or self.progress.finished else "due"
        return out

    def spend(self, calls: list[LLMCall], out: Outcome) -> None:  # the built-in agent's calls arrive apart
        for call in calls:
            self.budget.add(call)
        out.changes.spent = self.budget.spent

    def _succeeded(self, step: Step, stored: StepAttempt) -> Outcome:
        if not self.rounds.repeats(step, stored.result):  # a round that changed nothing new is no success
            self.breaker.record(None)
        self.progress.finish(step.id, "succeeded")
        return Outcome(attempt=stored, step_states={step.id: "succeeded"})

    def _failed(self, step: Step, stored: StepAttempt) -> Outcome:
        """The stall ladder, the retries, the breaker and feedback rounds, for a failed attempt."""
        result, attempt = stored.result, stored.attempt
        stored.breaker_tripped = tripped = self.breaker.record(fingerprint(step.command, result))
        limits = self.limits(step)
        baseline = self.outputs.get(step.baseline) if step.baseline else None
        diagnosis = diagnose(stored.command, result, limits.stall_timeout_s, baseline)
        if result.status == "stalled":
            self.stalls[step.id] += 1
        move = next_move(result.status, attempt - self.round_start.get(step.id, 0), self.stalls[step.id], limits, tripped)
        if result.sandbox_lost:  # nothing runs until the engine is back: a person resumes the run then
            move, self.sandbox_lost = "block", True
            diagnosis = dataclasses.replace(
                diagnosis,
                suggested_action="the Docker engine stopped or restarted under the run: once `autodev doctor` shows it "
                f"back, continue with `autodev resume {self.run_id} --action retry`",
            )
        out = Outcome(attempt=stored, notes=[Note("warning", f"step {step.id} {result.status}: {diagnosis.summary}")])
        said = {"summary": diagnosis.summary, "suggested_action": diagnosis.suggested_action}
        notice = {"step": step.id, "command": stored.command, "exit_code": result.exit_code, "status": result.status}
        out.events.append(CommandFailed(**notice, attempt=attempt, **said))
        if result.status == "stalled":
            out.events.append(StepStalled(**notice, attempt=attempt, stalls=self.stalls[step.id], **said))
        kind: Literal["failure", "stall", "breaker", "sandbox"] = "failure"
        if move == "finish" and step.feedback_to is not None and self.feedback_rounds < self.plan.max_feedback_rounds:
            self._send_back(step, stored, out)
        elif move == "finish":
            skipped = self.progress.finish(step.id, result.status)
            out.step_states = {step.id: result.status, **dict.fromkeys(skipped, "skipped")}
            if skipped:
                out.notes.append(Note("warning", f"skipped because {step.id} did not succeed: {', '.join(skipped)}"))
        elif move == "block":
            self.progress.finish(step.id, "blocked")
            out.step_states = {step.id: "blocked"}
            kind = "sandbox" if result.sandbox_lost else "breaker" if tripped else "stall"
            out.advice = "forced"
        else:
            out.notes.append(Note("warning", f"step {step.id}: attempt {attempt} {result.status}, running it again"))
        blocker = Blocker(step_id=step.id, command=stored.command, exit_code=result.exit_code, kind=kind, ts=utcnow(), **said)
        if kind == "failure":
            self.blockers.append(blocker)
            out.changes.blockers.append(blocker)
        else:
            self._block(blocker, result.status, diagnosis.evidence, out)
        return out

    def _send_back(self, step: Step, stored: StepAttempt, out: Outcome) -> None:
        """A failed check sends the run back to its agent step, which sees the failure's evidence;
        that step and everything after it run again, each with a fresh stall budget."""
        target, result = step.feedback_to, stored.result
        assert target is not None
        self.feedback_rounds += 1
        self.evidence[target] = failure_evidence(step.id, stored.command, result.status, result.exit_code, result.output_tail)
        again = self.progress.rewind(target)
        for sid in again:
            self.round_start[sid] = self.progress.attempts[sid]
            self.stalls[sid] = 0
        self.stale |= set(again) & self.running.keys()
        out.step_states = dict.fromkeys(again, "pending")
        out.changes.feedback_rounds, out.changes.evidence = self.feedback_rounds, dict(self.evidence)
        rounds = f"feedback round {self.feedback_rounds} of {self.plan.max_feedback_rounds}"
        out.events.append(
            FeedbackRound(
                step=step.id, to=target, round=self.feedback_rounds, max_rounds=self.plan.max_feedback_rounds,
                exit_code=result.exit_code, rerun=again,
            )
        )
        out.notes.append(Note("warning", f"check {step.id} failed: back to {target} with its evidence ({rounds}); again: {', '.join(again)}"))

    def _block(self, blocker: Blocker, status: StepStatus, evidence: list[str], out: Outcome) -> None:
        """Record the blocker that stopped the run at a step, and announce it (events, log)."""
        self.blockers.append(blocker)
        out.changes.blockers.append(blocker)
        notice = RunBlocked(
            step=blocker.step_id, command=blocker.command, exit_code=blocker.exit_code, status=status, reason=blocker.kind,
            summary=blocker.summary, suggested_action=blocker.suggested_action, evidence=evidence,
        )
        if blocker.kind == "breaker":
            out.events.append(BreakerTripped(**notice.model_dump(), threshold=self.breaker.threshold))
        out.events.append(notice)
        out.notes.append(
            Note("error", f"run blocked ({blocker.kind}) at step {blocker.step_id}: {blocker.summary}; try: {blocker.suggested_action}")
        )

    # --- what a person's decision changes ----------------------------------------------
    def pause(self) -> Outcome:
        """The run waits for a person's decision on its blocked steps (one decision each)."""
        blocked = self.progress.blocked_steps
        waiting = f"waiting for a decision on {', '.join(blocked)}"
        return Outcome(
            changes=MetadataChanges(phase=waiting, pauses=[Pause(kind="decision", step_id=blocked[0], ts=utcnow())]),
            status="blocked",
            loop_status=waiting,
        )

    def decide(self, decision: Decision) -> Outcome:
        """Carry out a person's decision on a blocked step (`decision.step`, default the first):
        retry it (with a new command, maybe), skip it, or abort the run. With no step blocked
        (the watchdog blocked the run), retry and skip go on from the first unfinished step and
        abort ends the run."""
        blocked = self.progress.blocked_steps
        if decision.step is not None and decision.step not in blocked:
            listed = ", ".join(blocked) or "none"
            return Outcome(notes=[Note("error", f"decision on {decision.step} ignored: it is not blocked (blocked: {listed})")])
        step_id = decision.step or (blocked[0] if blocked else None)
        out = Outcome(status="running", advice="due")
        self.sandbox_lost = False  # a person decided: the engine is back, or they say so
        if decision.action == "retry":
            self.breaker = FailureBreaker(self.rules.breaker_threshold)
            if step_id is not None:
                if any(b.step_id == step_id and b.kind == "budget" for b in self.waiting_on()):
                    self.budget.grant(step_id)
                self.progress.reopen(step_id)
                self.stalls[step_id] = 0
                self.round_start[step_id] = self.progress.attempts[step_id]  # its retries afresh
                out.step_states = {step_id: "pending"}
                if decision.command and decision.command.strip():
                    out.plan = self._replace_command(step_id, decision.command)
        elif decision.action == "skip" and step_id is not None:
            self.progress.waive(step_id)
            out.step_states = {step_id: "skipped"}
        elif decision.action == "abort":
            rest = self.progress.abort(step_id)
            out.step_states = {**({step_id: "failed"} if step_id else {}), **dict.fromkeys(rest, "skipped")}
        about = step_id or self.progress.phase
        mask = self.redactors[step_id].text if step_id in self.redactors else self.redact_all.text
        command, note = (mask(decision.command) if decision.command else None), mask(decision.note)
        intervention = Intervention(step_id=about, action=decision.action, command=command, note=note, ts=utcnow())
        out.changes.interventions.append(intervention)
        out.changes.phase = self.progress.phase
        out.events.append(RunResumed(step_id=about, action=decision.action, command=command, note=note))
        with_command = f" with `{command}`" if command else ""
        said = f"decision on {about}: {decision.action}{with_command}" if step_id else f"{decision.action}: no step is blocked, the run goes on from {about}"
        out.notes.append(Note("info", said))
        out.loop_status = f"decided on {about}: {decision.action}"
        return out

    def _replace_command(self, step_id: str, command: str) -> Plan:
        """The plan with this step's command replaced; an agent step becomes a command step."""
        replaced = {"kind": "command", "run": command, "instruction": None, "agent_command": None}
        steps = [s.model_copy(update=replaced) if s.id == step_id else s for s in self.plan.steps]
        self.plan = self.progress.plan = self.plan.model_copy(update={"steps": steps})
        self._limits.clear()
        return self.plan

    # --- how a run is restored ---------------------------------------------------------
    def restore(
        self, step_states: Mapping[str, str], attempts: list[StepAttempt], left: list[LeftAttempt] | None = None
    ) -> list[Outcome]:
        """Pick up a run recorded earlier: finished steps stay finished, attempts keep counting,
        and the steps still to run get their retries afresh. `left` are the attempts its
        previous orchestrator started and never recorded (it died): one that finished meanwhile
        counts as it ended (it is not run twice); one that was still running (killed now) or
        never finished is kept with its reason, and its step runs again."""
        self.progress.restore(dict(step_states), self._skipped_by_a_person)
        for a in attempts:
            self.progress.attempts[a.step_id] = max(self.progress.attempts[a.step_id], a.attempt)
            if a.step_id in self._baseline_steps:
                self.outputs[a.step_id] = a.result.output_tail
        for step_id, status in self.progress.status.items():
            if status is None:
                self.round_start[step_id] = self.progress.attempts[step_id]
        done = sum(status is not None for status in self.progress.status.values())
        outcomes = [
            Outcome(
                changes=MetadataChanges(dequeued=self._queued_before, phase=self.progress.phase),
                notes=[Note("info", f"continuing run {self.run_id}: {done} of {len(self.plan.steps)} steps already settled")],
            )
        ]
        for attempt in sorted(left or [], key=lambda a: (a.finished_at is None, a.finished_at or utcnow(), a.attempt)):
            if attempt.step_id not in self.progress.status or attempt.attempt <= self.progress.attempts[attempt.step_id]:
                continue  # recorded already (or not a step of this plan)
            if self.progress.status[attempt.step_id] is None:
                outcomes.append(self._settle_left(attempt))
            else:  # settled meanwhile: its number is taken all the same
                self.progress.attempts[attempt.step_id] = attempt.attempt
        return outcomes

    def _settle_left(self, left: LeftAttempt) -> Outcome:
        """What an attempt that outlived its orchestrator means, as if its result had come in."""
        step_id = left.step_id
        self.progress.attempts[step_id] = left.attempt
        self.running[step_id] = QueueEntry(queue_id=f"left-{left.attempt}", step_id=step_id, attempt=left.attempt, dispatched_at=utcnow())
        tail = self.redactors[step_id].text(left.output_tail)  # written before the log was masked
        deps_done = all(self.progress.status[d] == "succeeded" or d in self.progress.waived for d in self.plan.step(step_id).depends_on)
        result = left_result(left, tail, counts=left.exit_code is not None and deps_done)
        if result.exit_code is not None:
            outcome = self.on_result(step_id, left.attempt, result)
            assert outcome is not None
            outcome.notes.insert(0, Note("info", f"step {step_id} attempt {left.attempt} ended (exit {left.exit_code}) after the orchestrator died: not run again"))
            return outcome
        del self.running[step_id]
        self.round_start[step_id] = left.attempt  # it runs again, with its retries afresh
        command = self.redactors[step_id].text(self.plan.step(step_id).command)
        return Outcome(
            attempt=StepAttempt(run_id=self.run_id, step_id=step_id, attempt=left.attempt, command=command, result=result),
            notes=[Note("warning", f"step {step_id} attempt {left.attempt}: {result.exit_reason}; it runs again")],
        )

    def finish(self) -> Outcome:
        """The run's status and phase once no step can run."""
        return Outcome(changes=MetadataChanges(phase=self.progress.phase), status=self.progress.run_status)

