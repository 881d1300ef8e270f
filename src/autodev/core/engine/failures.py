"""What a failed attempt means: the facts the rules need, the rules' verdict, and its effects
(run again, block, send the run back to its agent step, or fail the step)."""

from __future__ import annotations

import dataclasses

from autodev.core.agent import failure_evidence
from autodev.core.commands import StepAttempt
from autodev.core.diagnosis import diagnose, fingerprint
from autodev.core.engine.effects import Effects, Note
from autodev.core.engine.rules import Block, Failure, Retry, SendBack, Settle, Wait, verdict_for
from autodev.core.engine.waits import LimitWaits
from autodev.core.events import CommandFailed, FeedbackRound, StepStalled
from autodev.core.models import Blocker, Step
from autodev.core.session import LimitWait

LOST_SANDBOX_ACTION = (
    "the Docker engine stopped or restarted under the run: once `autodev doctor` shows it back, "
    "continue with `autodev resume {run_id} --action retry`"
)


class FailureHandling(LimitWaits):
    def _failed(self, step: Step, stored: StepAttempt) -> Effects:
        """The rules' verdict on a failed attempt, carried out; every failure leaves a blocker (a
        step stopped by its provider's limit, which waits, is no failure)."""
        wait = self._wait_for(step, stored.result.limit) if stored.result.limit else None
        failure = self._facts(step, stored, wait)
        stored.breaker_tripped = failure.breaker_tripped
        verdict = verdict_for(failure)
        if isinstance(verdict, Wait) and wait is not None:
            return self._start_waiting(step, stored, wait)
        baseline = self.state.baseline_outputs.get(step.baseline) if step.baseline else None
        diagnosis = diagnose(stored.command, stored.result, failure.limits.stall_timeout_s, baseline)
        if stored.result.sandbox_lost:
            diagnosis = dataclasses.replace(diagnosis, suggested_action=LOST_SANDBOX_ACTION.format(run_id=self.run_id))
        if wait is not None:
            diagnosis = self.limit_diagnosis(step, wait, diagnosis)
        out = self._announce(step, stored, diagnosis.summary, diagnosis.suggested_action)
        said = {"summary": diagnosis.summary, "suggested_action": diagnosis.suggested_action}
        blocker = Blocker(step_id=step.id, command=stored.command, exit_code=stored.result.exit_code, ts=self.clock(), **said)
        match verdict:
            case Retry():
                out.notes.append(Note("warning", f"step {step.id}: attempt {stored.attempt} {stored.result.status}, running it again"))
            case SendBack(to=target):
                self._send_back(step, target, stored, out)
            case Settle():
                skipped = self.progress.finish(step.id, stored.result.status)
                out.step_states.update({step.id: stored.result.status, **dict.fromkeys(skipped, "skipped")})
                if skipped:
                    out.notes.append(Note("warning", f"skipped because {step.id} did not succeed: {', '.join(skipped)}"))
            case Block(kind=kind):
                self.state.sandbox_lost = self.state.sandbox_lost or kind == "sandbox"
                self.progress.finish(step.id, "blocked")
                out.step_states[step.id] = "blocked"
                out.advice = "forced"
                self.block(blocker.model_copy(update={"kind": kind}), stored.result.status, diagnosis.evidence, out)
                return out
        self.state.doc.blockers.append(blocker)  # a failure the run goes on from
        return out

    def _facts(self, step: Step, stored: StepAttempt, wait: LimitWait | None) -> Failure:
        """What the rules know of the failure; the breaker (unless a provider's limit stopped it)
        and the stall count take it in."""
        result = stored.result
        tripped = wait is None and self.state.breaker.record(fingerprint(step.command, result), self.policy.breaker_threshold)
        if wait is None:
            self._past_limit(step.id)
        if result.status == "stalled":
            self.state.stalls[step.id] += 1
        stalls = self.state.stalls[step.id]
        in_round = stored.attempt - self.state.round_start.get(step.id, 0)
        return Failure(
            step=step, result=result, limits=self.limits(step), failures=in_round - stalls, stalls=stalls,
            breaker_tripped=tripped, rounds_left=self.state.doc.rounds_to.get(step.feedback_to or '', 0) < self.plan.max_feedback_rounds,
            wait_until=wait.until if wait else None, wait_fits=wait is None or self._wait_fits(wait),
        )  # fmt: skip

    def _announce(self, step: Step, stored: StepAttempt, summary: str, action: str) -> Effects:
        result, attempt = stored.result, stored.attempt
        notice = {"step": step.id, "command": stored.command, "exit_code": result.exit_code, "status": result.status}
        said = {"summary": summary, "suggested_action": action}
        out = Effects(attempts=[stored], notes=[Note("warning", f"step {step.id} {result.status}: {summary}")])
        out.events.append(CommandFailed(**notice, attempt=attempt, **said))
        if result.status == "stalled":
            out.events.append(StepStalled(**notice, attempt=attempt, stalls=self.state.stalls[step.id], **said))
        return out

    def _send_back(self, step: Step, target: str, stored: StepAttempt, out: Effects) -> None:
        """A failed check sends the run back to its agent step, which sees the failure's evidence;
        that step and everything after it run again, each with a fresh stall budget."""
        doc, result = self.state.doc, stored.result
        doc.feedback_rounds += 1
        doc.rounds_to[target] = doc.rounds_to.get(target, 0) + 1
        doc.evidence[target] = failure_evidence(step.id, stored.command, result.status, result.exit_code, result.output_tail)
        again = self.progress.rewind(target)
        for sid in again:
            self.state.round_start[sid] = self.progress.attempts[sid]
            self.state.stalls[sid] = 0
        self.state.stale |= set(again) & self.running.keys()
        out.step_states.update(dict.fromkeys(again, "pending"))
        out.events.append(FeedbackRound(
            step=step.id, to=target, round=doc.rounds_to[target], max_rounds=self.plan.max_feedback_rounds,
            exit_code=result.exit_code, rerun=again,
        ))  # fmt: skip
        rounds = f"feedback round {doc.rounds_to[target]} of {self.plan.max_feedback_rounds}"
        out.notes.append(Note("warning", f"check {step.id} failed: back to {target} with its evidence ({rounds}); again: {', '.join(again)}"))

