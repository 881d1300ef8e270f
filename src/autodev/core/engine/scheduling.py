"""Which steps of a plan may run now, and what a finished or failed step means for the rest.

Pure logic over a validated plan and the run's state; the engine asks it at every input.
"""

from __future__ import annotations

import itertools
from collections.abc import Set as AbstractSet

from autodev.core.engine.state import RunState
from autodev.core.models import FAILED_STATUSES, Plan, RunStatus, Step, StepStatus


class Progress:
    """The plan's steps over the run's state: what is ready, what a failure skips, the run's
    status and phase. The state (`RunState.status`, `attempts`, `waived`) is the run's; the
    indexes kept here only make the questions cheap on a long plan."""

    def __init__(self, plan: Plan, state: RunState | None = None):
        """`state`: the run's (default: a run with no step started)."""
        self.plan = plan
        state = state or RunState.begin("", "", plan)
        self.status = state.status
        self.attempts = state.attempts
        self.waived = state.waived
        self._position = {s.id: i for i, s in enumerate(plan.steps)}
        self._first_open = 0  # no unfinished step comes before this position in the plan
        # Steps that neither wait to run nor succeeded, kept with every status change: asked at
        # every step, so a long plan is not walked for them.
        self.off_track: dict[str, StepStatus] = {
            sid: status for sid, status in self.status.items() if status not in (None, "succeeded")
        }
        self.finish_order: dict[str, int] = {}  # when each step last finished, counted: merges go in this order
        self._finishes = itertools.count(1)
        self._dependents: dict[str, list[str]] = {s.id: [] for s in plan.steps}
        for s in plan.steps:
            for dep in s.depends_on:
                self._dependents[dep].append(s.id)

    def ready(self, running: set[str], limit: int | None = None) -> list[Step]:
        """Unfinished steps, in plan order, whose dependencies all succeeded (or a person skipped
        them); at most `limit` of them. A blocked step holds back only the steps after it. The
        search starts at the first unfinished step and stops at the limit, so a long plan is not
        walked from the top at every dispatch. Merge steps (`merges`) run one at a time, and
        alone in the run's workspace: while none runs there, the one whose work finished first
        comes after the others found (none of the workspace's own)."""
        if limit == 0:
            return []
        found: list[Step] = []
        merges: list[Step] = []
        # A merge has the run's workspace to itself: no other merge, no step of the workspace beside it.
        merging = any(self.plan.step(sid).merges is not None for sid in running)
        in_workspace = any(self.plan.step(sid).worktree is None for sid in running)
        for s in itertools.islice(self.plan.steps, self._open_position(), None):
            if (
                self.status[s.id] is None
                and s.id not in running
                and all(self.status[d] == "succeeded" or d in self.waived for d in s.depends_on)
                and not (merging and s.worktree is None)
            ):
                (merges if s.merges is not None else found).append(s)
                if len(found) == limit:
                    return found
        if merges and not in_workspace and not any(s.worktree is None for s in found):
            found.append(min(merges, key=lambda m: max((self.finish_order.get(d, 0) for d in m.depends_on), default=0)))
        return found

    def _open_position(self) -> int:
        """The position of the first unfinished step (len(plan) when none is)."""
        steps = self.plan.steps
        while self._first_open < len(steps) and self.status[steps[self._first_open].id] is not None:
            self._first_open += 1
        return self._first_open

    def _set(self, step_id: str, status: StepStatus | None) -> None:
        self.status[step_id] = status
        if status in (None, "succeeded"):
            self.off_track.pop(step_id, None)
        else:
            self.off_track[step_id] = status

    def _reopen(self, step_id: str) -> None:
        self._set(step_id, None)
        self._first_open = min(self._first_open, self._position[step_id])

    def finish(self, step_id: str, status: StepStatus) -> list[str]:
        """Record a step's final status; a failure skips every step downstream. Returns those.

        A blocked step skips nothing: a person may still retry or skip it.
        """
        self._set(step_id, status)
        self.finish_order[step_id] = next(self._finishes)
        if status not in FAILED_STATUSES:
            return []
        skipped: list[str] = []
        pending = list(self._dependents[step_id])
        while pending:
            dependent = pending.pop()
            if self.status[dependent] is None:
                self._set(dependent, "skipped")
                skipped.append(dependent)
                pending.extend(self._dependents[dependent])
        return skipped

    def finished_in(self, order: list[str]) -> None:
        """Steps a resumed run found finished, in the order they finished (what the merges go by)."""
        for step_id in order:
            self.finish_order[step_id] = next(self._finishes)

    def reopen(self, step_id: str) -> None:
        """A person chose to retry a blocked step."""
        self._reopen(step_id)

    def rewind(self, step_id: str) -> list[str]:
        """A failed check sends the run back to `step_id`: it and everything downstream of it
        run again. Returns those steps, in plan order."""
        again = {step_id}
        pending = [step_id]
        while pending:
            for dependent in self._dependents[pending.pop()]:
                if dependent not in again:
                    again.add(dependent)
                    pending.append(dependent)
        for sid in again:
            self._reopen(sid)
            self.waived.discard(sid)
        return [s.id for s in self.plan.steps if s.id in again]

    def waive(self, step_id: str) -> None:
        """A person chose to skip a blocked step: the steps after it may run."""
        self._set(step_id, "skipped")
        self.waived.add(step_id)

    def abort(self, step_id: str | None) -> list[str]:
        """A person chose to stop the run: the step (if one is named) fails and nothing else
        runs, the other blocked steps included. Returns the steps skipped."""
        if step_id is not None:
            self._set(step_id, "failed")
        rest = [sid for sid, st in self.status.items() if st in (None, "blocked") and sid != step_id]
        for sid in rest:
            self._set(sid, "skipped")
        return rest

    def restore(self, states: dict[str, str], skipped_by_a_person: AbstractSet[str] = frozenset()) -> None:
        """Continue a run from what the store recorded: settled steps stay as they are (a failed
        step stays failed, and what it skipped stays skipped); a step a person skipped counts as
        done for what depends on it. Steps with no final state (pending, running) run."""
        for step_id, status in states.items():
            if step_id not in self.status or status in ("pending", "running", "waiting"):
                continue
            self._set(step_id, status)  # type: ignore[arg-type]
            if status == "skipped" and step_id in skipped_by_a_person:
                self.waived.add(step_id)

    @property
    def blocked(self) -> bool:
        return "blocked" in self.off_track.values()

    @property
    def blocked_steps(self) -> list[str]:
        """The blocked steps, in plan order."""
        return sorted((sid for sid, st in self.off_track.items() if st == "blocked"), key=self._position.__getitem__)

    @property
    def finished(self) -> bool:
        return self._open_position() == len(self.plan.steps)

    def shown_steps(self, running: set[str], size: int) -> list[Step]:
        """The steps a live table shows: the whole plan when it has at most `size` steps; else,
        in plan order, the steps off track (a quarter of `size` at most) and running, then the
        next ones to run, up to `size` in all."""
        steps = self.plan.steps
        if len(steps) <= size:
            return list(steps)
        keep = set(itertools.islice(self.off_track, size // 4)) | running
        for s in itertools.islice(steps, self._open_position(), None):
            if len(keep) >= size:
                break
            keep.add(s.id)
        return [steps[i] for i in sorted(self._position[sid] for sid in keep)]

    @property
    def run_status(self) -> RunStatus:
        values = set(self.status.values())
        if self.blocked:
            return "blocked"
        unwaived_skips = any(st == "skipped" and sid not in self.waived for sid, st in self.status.items())
        if values & FAILED_STATUSES or unwaived_skips:
            return "failed"
        return "succeeded" if self.finished else "running"

    @property
    def phase(self) -> str:
        """The first unfinished step in plan order, or how the run ended."""
        if self.blocked:
            return "blocked"
        position = self._open_position()
        if position < len(self.plan.steps):
            return self.plan.steps[position].id
        return "done" if self.run_status == "succeeded" else self.run_status
