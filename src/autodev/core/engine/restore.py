"""Where a run recorded earlier picks up: finished steps stay finished, attempts keep counting,
the steps still to run get their retries afresh, and the attempts a dead orchestrator left
behind are settled (one that finished meanwhile counts as it ended; it is not run twice)."""

from __future__ import annotations

from autodev.core.commands import StepAttempt
from autodev.core.engine.effects import Effects, Note
from autodev.core.engine.inputs import AttemptEnded, Restore
from autodev.core.engine.resumes import CliSessions
from autodev.core.recovery import left_result
from autodev.core.session import LeftAttempt, QueueEntry


class Restoring(CliSessions):
    def _restore(self, restore: Restore) -> Effects:
        """The run as recorded; a left attempt that counts is handled as if its result had come in."""
        skipped_by_a_person = {i.step_id for i in self.state.doc.interventions if i.action == "skip"}
        self.progress.restore(dict(restore.step_states), skipped_by_a_person)
        self.progress.finished_in([a.step_id for a in sorted(restore.attempts, key=lambda a: a.result.finished_at)])
        for a in restore.attempts:
            self.progress.attempts[a.step_id] = max(self.progress.attempts[a.step_id], a.attempt)
            if a.step_id in self.baselines:
                self.state.baseline_outputs[a.step_id] = a.result.output_tail
        for step_id, status in self.progress.status.items():
            if status is None:
                self.state.round_start[step_id] = self.progress.attempts[step_id]
        self.state.doc.queue = []  # what the dead process had dispatched is settled below
        done = sum(status is not None for status in self.progress.status.values())
        out = Effects(notes=[Note("info", f"continuing run {self.run_id}: {done} of {len(self.plan.steps)} steps already settled")])
        for left in sorted(restore.left, key=lambda a: (a.finished_at is None, a.finished_at or self.clock(), a.attempt)):
            if left.step_id not in self.progress.status or left.attempt <= self.progress.attempts[left.step_id]:
                continue  # recorded already (or not a step of this plan)
            if self.progress.status[left.step_id] is not None:  # settled meanwhile: its number is taken all the same
                self.progress.attempts[left.step_id] = left.attempt
            elif (counted := self._settle_left(left, out)) is not None:
                out.merge(self._ended(counted))
        return out

    def _settle_left(self, left: LeftAttempt, out: Effects) -> AttemptEnded | None:
        """An attempt that outlived its orchestrator: its end, when it finished and counts (put
        back in the queue, for the engine to handle as it ended); else kept with its reason, and
        its step runs again."""
        step_id = left.step_id
        self.progress.attempts[step_id] = left.attempt
        tail = self.redactors[step_id].text(left.output_tail)  # written before the log was masked
        step = self.plan.step(step_id)
        report = self._left_session(step, left)
        deps_done = all(self.progress.status[d] == "succeeded" or d in self.progress.waived for d in step.depends_on)
        # A merge is never taken from what was left: it runs again (a merge done already is not done twice).
        result = left_result(left, tail, counts=left.exit_code is not None and deps_done and step.merges is None)
        result.agent = report  # the session it ran in, as its log's head names it
        if step.merges is not None:
            result = result.model_copy(update={"exit_reason": "interrupted: its orchestrator died during the merge; "
                                               "it runs again (a merge made already is not made twice)"})  # fmt: skip
        if result.exit_code is not None:
            entry = QueueEntry(queue_id=f"left-{left.attempt}", step_id=step_id, attempt=left.attempt, dispatched_at=self.clock())
            self.state.doc.queue.append(entry)
            note = f"step {step_id} attempt {left.attempt} ended (exit {left.exit_code}) after the orchestrator died: not run again"
            out.notes.append(Note("info", note))
            return AttemptEnded(step_id=step_id, attempt=left.attempt, result=result)
        self.state.round_start[step_id] = left.attempt  # it runs again, with its retries afresh
        command = self.redactors[step_id].text(step.command)
        out.attempts.append(StepAttempt(run_id=self.run_id, step_id=step_id, attempt=left.attempt, command=command, result=result))
        out.notes.append(Note("warning", f"step {step_id} attempt {left.attempt}: {result.exit_reason}; it runs again"))
        return None
