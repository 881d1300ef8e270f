"""The plan flow's executor: each attempt the engine starts is a Prefect task run named after its
step (`run_command`, `run_agent` for the built-in agent, `run_merge` for a merge step), in the
run's sandbox, or, for a step of a parallel run's task (`worktree`), in the sandbox of that
task's clone (made when its first step starts: `blocks/git_merge.py`).

A step task hands its end to the loop through the executor's result channel as soon as it is
judged; a task that broke before it had an end is heard of through its future, on the same
channel (each attempt's end reaches the loop once). When an end says the sandbox went away, the
next attempt gets a new sandbox (the engine starts none until a person said the engine is back).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import git
from prefect.futures import PrefectFuture

from autodev.blocks.git_merge import open_lane
from autodev.blocks.llm import LLM
from autodev.blocks.sandbox import SandboxSession
from autodev.core.commands import CommandResult
from autodev.core.engine.effects import AttemptSpec
from autodev.core.engine.inputs import AttemptEnded
from autodev.core.engine.loop import Executor
from autodev.core.errors import AutodevError, CommandFailed
from autodev.core.models import utcnow
from autodev.flows.arguments import as_is
from autodev.tasks.agent import run_agent
from autodev.tasks.merge import run_merge
from autodev.tasks.run_command import Attempt, run_command


class PrefectExecutor(Executor):
    def __init__(
        self, open_sandbox: Callable[[Path], SandboxSession], workspace: Path, llm: LLM | None,
        tail_bytes: int, live_log_bytes: int,
    ):  # fmt: skip
        super().__init__()
        self.open_sandbox = open_sandbox
        self.workspace = workspace
        self.llm = llm
        self.tail_bytes = tail_bytes
        self.live_log_bytes = live_log_bytes
        self.sandbox = open_sandbox(workspace)
        self.lanes: dict[str, Lane] = {}  # the tasks' clones with their sandboxes, opened when a step needs one
        self._sandbox_lost = False

    def start(self, spec: AttemptSpec) -> None:
        if self._sandbox_lost:  # the engine came back (a person retried): new sandboxes for the run
            self.close()
            self.sandbox, self.lanes, self._sandbox_lost = self.open_sandbox(self.workspace), {}, False
        try:
            workspace, sandbox = self._place(spec.step.worktree)
        except (git.GitError, OSError, ValueError, AutodevError) as exc:  # ValueError: gitpython reading a broken repository
            reason = f"could not make the clone of worktree {spec.step.worktree}: {exc}"[:500]
            self.channel.deliver(AttemptEnded(step_id=spec.step.id, attempt=spec.attempt, result=_broken(reason)))
            return
        attempt = Attempt(spec, sandbox, self.channel, workspace, self.tail_bytes, self.live_log_bytes)
        if spec.step.merges is not None:
            future = run_merge.submit(spec.step.id, as_is(attempt))
        elif spec.command is None:
            assert self.llm is not None  # the engine starts the built-in agent only with a model
            future = run_agent.submit(spec.step.id, as_is(attempt), as_is(self.llm))
        else:
            self.channel.starting(spec.step.id, spec.attempt)  # straight to its command: no model call or merge first
            future = run_command.submit(spec.step.id, as_is(attempt))
        future.add_done_callback(lambda done: self._ended_by_its_task(spec, done))

    def _place(self, worktree: str | None) -> tuple[Path, SandboxSession]:
        """Where a step runs: the run's workspace and sandbox, or its task's clone and sandbox."""
        if worktree is None:
            return self.workspace, self.sandbox
        if worktree not in self.lanes:
            clone = open_lane(self.workspace, worktree)
            self.lanes[worktree] = Lane(clone, self.open_sandbox(clone))
        lane = self.lanes[worktree]
        return lane.clone, lane.sandbox

    def next_ended(self, timeout_s: float) -> AttemptEnded | None:
        ended = super().next_ended(timeout_s)
        if ended is not None and ended.result.sandbox_lost:
            self._sandbox_lost = True
        return ended

    def _ended_by_its_task(self, spec: AttemptSpec, future: PrefectFuture) -> None:
        """The task run ended: its attempt's end was handed over already, unless the task broke first."""
        if not self.channel.has(spec.step.id, spec.attempt):
            self.channel.deliver(AttemptEnded(step_id=spec.step.id, attempt=spec.attempt, result=_result_of(future)))

    def close(self) -> None:
        for sandbox in [self.sandbox, *(lane.sandbox for lane in self.lanes.values())]:
            sandbox.close()


@dataclass(frozen=True)
class Lane:
    clone: Path
    sandbox: SandboxSession


def _result_of(future: PrefectFuture) -> CommandResult:
    """The CommandResult a step task returned, whether its state is Completed or Failed."""
    outcome = future.result(raise_on_failure=False)
    if isinstance(outcome, CommandResult):
        return outcome
    if isinstance(outcome, CommandFailed):
        return outcome.result
    # The task itself broke (not the command): keep the evidence, the exit code is unknown.
    return _broken(f"task crashed: {outcome!r}"[:500])


def _broken(reason: str) -> CommandResult:
    now = utcnow()
    return CommandResult(status="failed", exit_code=None, exit_reason=reason, started_at=now, finished_at=now)
