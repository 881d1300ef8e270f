"""The run's loop, written once: the seed's `run_once`, driving the engine.

It hands the engine what happens (the run begins or resumes, an attempt ends, a person decides)
and carries out each answer in one order: the advice when it is due, one write of everything
the answer changed (`Recorder.record`), the attempts it starts (`Executor.start`), then the log
lines, events and dashboard (`Recorder.announce`). Each of those is a port: the plan flow plugs
in Prefect tasks, the state store and Prefect events (`autodev/flows/`); the tests plug in a
scripted executor and an in-memory recorder (`autodev/testing.py`) and run this same loop in
milliseconds.
"""

from __future__ import annotations

import queue
import threading
from abc import ABC, abstractmethod
from datetime import datetime

from autodev.core.engine.effects import AttemptSpec, Effects
from autodev.core.engine.inputs import AdviceReady, AttemptEnded, Beat, Begin, DecisionTaken, Restore, WaitForDecision, Wake
from autodev.core.engine.machine import RunEngine
from autodev.core.engine.state import RunState
from autodev.core.models import Blocker, utcnow
from autodev.core.session import Decision


class ResultChannel:
    """Where attempts' ends reach the loop: one queue, each attempt's end exactly once (a task
    that hands its result over and then ends, or breaks, is heard of once). It also keeps when a
    running attempt last printed something, for the heartbeat.

    And it lets what can wait make way for the next command's start. The loop and the step tasks
    are threads of one process, and Python runs one thread at a time: a finished task's own
    bookkeeping (its verdict in the log, Prefect's record of its task run) or the loop's events,
    run while the next command is being started, delay that start (on a 2-core machine the time
    between one command's end and the next one's start fell from 11.8 to 8.2 ms without them,
    `benchmarks/step_overhead.py`). So each waits, at most YIELD_S, until the loop has started
    what the ends it took lead to and those commands have begun (`after_handover`,
    `after_starts`); the executor names the starts that go straight to a command (`starting`)."""

    YIELD_S = 0.1  # a start that takes longer (a new sandbox first) is not waited for

    def __init__(self) -> None:
        self._ended: queue.Queue[AttemptEnded] = queue.Queue()
        self._delivered: set[tuple[str, int]] = set()
        self._unhandled: set[tuple[str, int]] = set()  # handed over; the loop has not started what follows yet
        self._taken: list[tuple[str, int]] = []  # taken by the loop since it last started what follows
        self._started: set[tuple[str, int]] = set()  # started by the loop since then
        self._starting: set[tuple[str, int]] = set()  # started; their command has not begun yet
        self._waiting: set[tuple[str, int]] = set()  # tasks waiting in `after_handover`
        self._followed_by: dict[tuple[str, int], frozenset[tuple[str, int]]] = {}  # for those: the starts that followed
        self._changed = threading.Condition()
        self.last_output_at: datetime | None = None

    def deliver(self, ended: AttemptEnded) -> bool:
        """Hand an attempt's end to the loop; False (and nothing sent) when it was handed over already."""
        key = (ended.step_id, ended.attempt)
        with self._changed:
            if key in self._delivered:
                return False
            self._delivered.add(key)
            self._unhandled.add(key)
            self._starting.discard(key)  # it ended: it began, or never will
            self._changed.notify_all()
        self._ended.put(ended)
        return True

    def has(self, step_id: str, attempt: int) -> bool:
        """Whether this attempt's end was handed over."""
        with self._changed:
            return (step_id, attempt) in self._delivered

    def output_seen(self) -> None:
        self.last_output_at = utcnow()

    def next(self, timeout_s: float) -> AttemptEnded | None:
        """The next attempt's end, waiting up to `timeout_s` (0: only one already there)."""
        try:
            ended = self._ended.get(timeout=timeout_s) if timeout_s > 0 else self._ended.get_nowait()
        except queue.Empty:
            return None
        with self._changed:
            self._taken.append((ended.step_id, ended.attempt))
        return ended

    def starting(self, step_id: str, attempt: int) -> None:
        """The executor started this attempt, which goes straight to its command; it has not begun yet."""
        with self._changed:
            self._starting.add((step_id, attempt))
            self._started.add((step_id, attempt))

    def began(self, step_id: str, attempt: int) -> None:
        """The attempt's command began (or it will never run)."""
        with self._changed:
            self._starting.discard((step_id, attempt))
            self._changed.notify_all()

    def after_starts(self) -> None:
        """The loop's side: it has started what the ends it took lead to; wait until those
        commands began."""
        with self._changed:
            started, self._started = frozenset(self._started), set()
            for key in self._taken:
                self._unhandled.discard(key)
                if key in self._waiting:
                    self._followed_by[key] = started
            self._taken.clear()
            self._changed.notify_all()
            self._changed.wait_for(lambda: not started & self._starting, timeout=self.YIELD_S)

    def after_handover(self, step_id: str, attempt: int) -> None:
        """A task's side, once it handed its end over: wait until the loop started what follows
        and those commands began."""
        key = (step_id, attempt)

        def followed() -> bool:
            return key not in self._unhandled and not self._followed_by.get(key, frozenset()) & self._starting

        with self._changed:
            self._waiting.add(key)
            self._changed.wait_for(followed, timeout=self.YIELD_S)
            self._waiting.discard(key)
            self._followed_by.pop(key, None)


class Executor(ABC):
    """Runs attempts: starts each, and hands each one's end back through its ResultChannel."""

    def __init__(self) -> None:
        self.channel = ResultChannel()

    @abstractmethod
    def start(self, spec: AttemptSpec) -> None:
        """Start the attempt and return; its end arrives through `channel`."""

    def next_ended(self, timeout_s: float) -> AttemptEnded | None:
        return self.channel.next(timeout_s)

    @abstractmethod
    def close(self) -> None:
        """Stop what the executor holds (its sandbox); the attempts' ends are all in by then."""


class Recorder(ABC):
    """Where the effects of the engine's answers go: the one place of side effects."""

    @abstractmethod
    def record(self, effects: Effects, state: RunState) -> None:
        """Write, in one transaction, the attempts, the step states, the model calls and the run's document."""

    @abstractmethod
    def announce(self, effects: Effects, engine: RunEngine) -> None:
        """Log the lines, send the events, bring the dashboard up to date."""


class Advisor(ABC):
    @abstractmethod
    def advise(self, engine: RunEngine, force: bool) -> AdviceReady | None:
        """The next-step advice for the run as it stands (in full when `force`), or None when
        nothing it depends on changed."""


class Decider(ABC):
    @abstractmethod
    def decide(self, blockers: list[Blocker], run_id: str, timeout_s: float | None = None) -> Decision | None:
        """A person's decision on one of the blocked (or waiting) steps, or None when none came
        in time; `timeout_s`: how long until a step's wait for its provider's limit ends (the
        decider's own timeout when None)."""


class RunLoop:
    def __init__(
        self, engine: RunEngine, executor: Executor, recorder: Recorder, decider: Decider,
        advisor: Advisor | None = None, heartbeat_interval_s: float = 10,
    ):  # fmt: skip
        self.engine = engine
        self.executor = executor
        self.recorder = recorder
        self.decider = decider
        self.advisor = advisor
        self.heartbeat_interval_s = heartbeat_interval_s

    def run(self, restore: Restore | None = None, decision: Decision | None = None) -> None:
        """Until no step can run; a blocked run with nothing else to do waits for a person. A run
        that is restored first settles what its previous orchestrator left, then takes `decision`."""
        if restore is not None:
            self.take(self.engine.handle(restore))
        self.take(self.engine.handle(Begin() if decision is None else DecisionTaken(decision=decision)))
        while True:
            while self.engine.running:
                self._wait()
            if (wake := self.engine.next_wake) is not None:  # only steps waiting for a limit are left
                left = (wake - self.engine.clock()).total_seconds()
                decision = self._ask(left) if self.engine.waiting_on() else None
                self.take(self.engine.handle(Wake() if decision is None else DecisionTaken(decision=decision)))
                continue
            if not self.engine.waits_for_a_person:
                return
            decision = self._ask()
            if decision is None:
                return  # nobody decided in time: the run stays blocked and can be resumed later
            self.take(self.engine.handle(DecisionTaken(decision=decision)))

    def _wait(self) -> None:
        """Hand over the attempts that ended, or beat once a heartbeat interval passes without one
        (sooner when a step's wait for its provider's limit ends: it starts then)."""
        wake = self.engine.next_wake
        until_wake = None if wake is None else max(0.05, (wake - self.engine.clock()).total_seconds())
        ended = self.executor.next_ended(min(self.heartbeat_interval_s, until_wake or self.heartbeat_interval_s))
        if ended is None:
            woken = self.engine.handle(Wake()) if wake is not None and self.engine.clock() >= wake else Effects()
            self.take(woken.merge(Effects(loop_status=f"waiting for {', '.join(self.engine.running) or 'a limit to reset'}")))
        while ended is not None:
            self.take(self.engine.handle(ended))
            ended = self.executor.next_ended(0)  # others that ended meanwhile

    def _ask(self, timeout_s: float | None = None) -> Decision | None:
        """A person's decision on the blocked steps; with `timeout_s`, while steps wait for a
        limit (a decision ends the wait early)."""
        blockers = self.engine.waiting_on()
        self.take(self.engine.handle(WaitForDecision()))
        return self.decider.decide(blockers, self.engine.run_id, timeout_s)

    def take(self, effects: Effects) -> None:
        """Carry out an answer of the engine: the advice first when it is due (the next step, an
        agent or a person, finds it), one write with the heartbeat, the starts, the announcements."""
        if effects.advice and self.advisor is not None:
            advice = self.advisor.advise(self.engine, force=effects.advice == "forced")
            if advice is not None:
                effects.merge(self.engine.handle(advice))
        status = effects.loop_status or f"dispatched {', '.join(self.engine.running)}"
        self.engine.handle(Beat(loop_status=status, last_output_at=self.executor.channel.last_output_at))
        self.recorder.record(effects, self.engine.state)
        for spec in effects.started:
            self.executor.start(spec)
        self.executor.channel.after_starts()  # the commands begin before the announcements
        self.recorder.announce(effects, self.engine)
