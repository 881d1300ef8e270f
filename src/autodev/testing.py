"""Running the real loop without Docker, Prefect or a database: a scripted executor, an
in-memory recorder and scripted decisions, for tests that drive the run engine in milliseconds.

    seen = run_plan_scripted(plan, {"pytest": [Scripted("failed", 1, "FAILED t.py::x\\n")]})
    seen.attempts, seen.states(), seen.events(FeedbackRound), seen.engine.state

Each command's results come from the script, in order, by the first scripted prefix its command
starts with; a command with nothing (left) scripted succeeds. Attempts end one at a time, the
oldest first unless `order` picks another. The executor judges each result as the Prefect one
does (`judge`), once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from autodev.core.commands import AgentReport, CommandResult, StepAttempt
from autodev.core.engine.effects import AttemptSpec, Effects, Policy
from autodev.core.engine.inputs import AttemptEnded, Restore
from autodev.core.engine.judge import judge
from autodev.core.engine.loop import Decider, Executor, Recorder, RunLoop
from autodev.core.engine.machine import RunEngine
from autodev.core.engine.state import RunState
from autodev.core.models import Blocker, CommandStatus, Plan, utcnow
from autodev.core.plan import parse_plan
from autodev.core.session import Decision, SessionMetadata


@dataclass(frozen=True)
class Scripted:
    """What one command does: its status, exit code and output."""

    status: CommandStatus = "succeeded"
    exit_code: int | None = 0
    output: str = ""
    round_digest: str | None = None  # an agent round's change, as a git workspace would digest it
    session: str | None = None  # the session an agent CLI's events named (an agent step's attempt)
    host_refused: bool = False  # git on the host refused the step's work (a merge on a full disk)


class ScriptedExecutor(Executor):
    """Runs nothing: each started attempt ends with its command's next scripted result when the
    loop asks for the next end. Every attempt started is kept in `started`."""

    def __init__(
        self, script: dict[str, list[Scripted]] | None = None, order: Callable[[list[AttemptSpec]], AttemptSpec] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ):  # fmt: skip
        super().__init__()
        self.clock = clock  # the engine's: a result's times are on it
        self.script = {prefix: list(results) for prefix, results in (script or {}).items()}
        self.order = order or (lambda running: running[0])
        self.started: list[AttemptSpec] = []
        self.timeline: list[tuple[str, str, int]] = []  # ("start" | "end", step, attempt)
        self._running: list[AttemptSpec] = []

    def start(self, spec: AttemptSpec) -> None:
        self.started.append(spec)
        self._running.append(spec)
        self.timeline.append(("start", spec.step.id, spec.attempt))

    def next_ended(self, timeout_s: float) -> AttemptEnded | None:
        if not self._running:
            return None
        spec = self.order(self._running)
        self._running.remove(spec)
        self.timeline.append(("end", spec.step.id, spec.attempt))
        return AttemptEnded(step_id=spec.step.id, attempt=spec.attempt, result=judge(spec.step, self._run(spec), spec.baseline_output))

    def close(self) -> None:
        pass

    def command_of(self, spec: AttemptSpec) -> str:
        return spec.command or f"agent {spec.step.id}"

    def _run(self, spec: AttemptSpec) -> CommandResult:
        command = self.command_of(spec)
        results = next((queue for prefix, queue in self.script.items() if command.startswith(prefix)), [])
        scripted = results.pop(0) if results else Scripted()
        began, output = self.clock(), spec.redactor.text(scripted.output)  # masked, as the output capture does
        return CommandResult(
            status=scripted.status, exit_code=scripted.exit_code, started_at=began, finished_at=began + timedelta(seconds=1),
            output_tail=output, output_bytes=len(output), round_digest=scripted.round_digest,
            agent=_report(spec, scripted, output), host_refused=scripted.host_refused,
        )  # fmt: skip


def _report(spec: AttemptSpec, scripted: Scripted, output: str) -> AgentReport | None:
    """An agent CLI's report of a scripted round that named its session: a failed one's output is its error events."""
    if not (scripted.session and spec.agent_stream):
        return None
    errors = output.splitlines() if scripted.status != "succeeded" else []
    return AgentReport(agent=spec.agent_stream, session_id=scripted.session, events=1, commands=1, errors=errors)


@dataclass
class MemoryRecorder(Recorder):
    """Keeps every answer the loop carried out, and the run's document as each write left it."""

    written: list[Effects] = field(default_factory=list)
    documents: list[SessionMetadata] = field(default_factory=list)

    def record(self, effects: Effects, state: RunState) -> None:
        self.written.append(effects)
        self.documents.append(state.doc.model_copy(deep=True))

    def announce(self, effects: Effects, engine: RunEngine) -> None:
        pass

    @property
    def attempts(self) -> list[StepAttempt]:
        return [a for e in self.written for a in e.attempts]

    def events(self, kind: type) -> list:
        return [event for e in self.written for event in e.events if isinstance(event, kind)]

    def states(self) -> dict[str, str]:
        """Each step's state as the writes left it."""
        found: dict[str, str] = {}
        for effects in self.written:
            found.update(effects.step_states)
        return found


class ScriptedDecider(Decider):
    """A person's decisions, in order; None (nobody decided in time) once they run out. Asked
    while a step waits for a limit, with none left, it lets `clock` (a FixedClock) run to the
    wait's end."""

    def __init__(self, decisions: Iterable[Decision] = (), clock: FixedClock | None = None):
        self.decisions = list(decisions)
        self.clock = clock
        self.asked: list[list[Blocker]] = []

    def decide(self, blockers: list[Blocker], run_id: str, timeout_s: float | None = None) -> Decision | None:
        self.asked.append(blockers)
        if self.decisions:
            return self.decisions.pop(0)
        if timeout_s is not None:
            assert self.clock is not None, "a run with limit waits needs a FixedClock (scripted_engine(..., clock=FixedClock()))"
            self.clock.advance(timeout_s)
        return None


class FixedClock:
    """A clock that moves only when told (`advance`)."""

    def __init__(self, start: datetime | None = None):
        self.now = start or datetime(2026, 1, 1, tzinfo=utcnow().tzinfo)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def scripted_engine(plan: Plan | str, policy: Policy | None = None, doc: SessionMetadata | None = None, **options) -> RunEngine:
    """An engine for run `run-1` in `/ws` (ids `q1`, `q2`, ...; `options`: clock, environ, secrets)."""
    plan = parse_plan(plan) if isinstance(plan, str) else plan
    ids = iter(range(1, 1_000_000))
    options.setdefault("new_id", lambda: f"q{next(ids)}")
    options.setdefault("environ", {})
    return RunEngine(plan, RunState.begin("run-1", "/ws", plan, doc), policy or Policy(), **options)


@dataclass
class ScriptedRun:
    """A run driven through the real loop: its engine, executor, recorder and decider."""

    engine: RunEngine
    executor: ScriptedExecutor
    recorder: MemoryRecorder
    decider: ScriptedDecider

    def go(self, restore: Restore | None = None, decision: Decision | None = None) -> ScriptedRun:
        """Run the loop until no step can run and no decision comes (again, after a first go)."""
        RunLoop(self.engine, self.executor, self.recorder, self.decider).run(restore, decision)
        return self

    @property
    def attempts(self) -> list[StepAttempt]:
        return self.recorder.attempts

    def events(self, kind: type) -> list:
        return self.recorder.events(kind)

    def states(self) -> dict[str, str]:
        return self.recorder.states()


def scripted_run(
    engine: RunEngine | Plan | str, script: dict[str, list[Scripted]] | None = None, decisions: Iterable[Decision] = (),
    order: Callable[[list[AttemptSpec]], AttemptSpec] | None = None,
) -> ScriptedRun:  # fmt: skip
    """A run of `engine` (or a scripted engine for a plan) ready to `go()`."""
    engine = engine if isinstance(engine, RunEngine) else scripted_engine(engine)
    clock = engine.clock if isinstance(engine.clock, FixedClock) else None
    return ScriptedRun(engine, ScriptedExecutor(script, order, engine.clock), MemoryRecorder(), ScriptedDecider(decisions, clock))
