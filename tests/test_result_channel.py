"""Where attempts' ends reach the loop (`ResultChannel`), in milliseconds with plain threads: each
end is heard once, and the work that can wait (a finished task's own bookkeeping, the loop's
announcements) makes way for the next command's start, for a bounded time."""

from __future__ import annotations

import threading
import time

from autodev.core.commands import CommandResult
from autodev.core.engine.inputs import AttemptEnded
from autodev.core.engine.loop import ResultChannel
from autodev.core.models import utcnow


def ended(step_id: str, attempt: int = 1) -> AttemptEnded:
    now = utcnow()
    return AttemptEnded(step_id=step_id, attempt=attempt, result=CommandResult(status="succeeded", exit_code=0, started_at=now, finished_at=now))


def test_an_end_handed_over_twice_reaches_the_loop_once():
    channel = ResultChannel()
    assert channel.deliver(ended("a")) and not channel.deliver(ended("a"))
    assert channel.next(0).step_id == "a" and channel.next(0) is None and channel.has("a", 1)


def test_a_finished_task_and_the_loop_wait_until_the_next_command_began(monkeypatch):
    monkeypatch.setattr(ResultChannel, "YIELD_S", 5.0)  # a loaded machine does not end the wait early here
    channel, order = ResultChannel(), []

    def finished_task() -> None:  # `a` ended: it hands over, then does its own bookkeeping
        channel.deliver(ended("a"))
        channel.after_handover("a", 1)
        order.append("a's bookkeeping")

    def next_task() -> None:  # `b`, started by the loop, takes a while to begin its command
        time.sleep(0.03)
        order.append("b began")
        channel.began("b", 1)

    task = threading.Thread(target=finished_task)
    task.start()
    assert channel.next(1).step_id == "a"
    time.sleep(0.02)  # the loop decides and records what comes next: `a` still waits
    assert order == []
    channel.starting("b", 1)
    threading.Thread(target=next_task).start()
    channel.after_starts()
    order.append("the loop's announcements")
    task.join(1)
    assert order[0] == "b began" and set(order[1:]) == {"a's bookkeeping", "the loop's announcements"}


def test_a_start_that_does_not_begin_holds_nobody_longer_than_the_bound():
    channel = ResultChannel()
    channel.starting("slow", 1)  # a new sandbox, a model call first: its command begins later
    began = time.monotonic()
    channel.after_starts()
    assert ResultChannel.YIELD_S * 0.9 <= time.monotonic() - began < 1


def test_an_attempt_that_ends_without_beginning_is_no_longer_waited_for():
    channel = ResultChannel()
    channel.starting("broken", 1)  # its task broke before the command ran: its end comes from its future
    channel.deliver(ended("broken"))
    channel.next(0)
    began = time.monotonic()
    channel.after_starts()
    assert time.monotonic() - began < ResultChannel.YIELD_S / 2


def test_a_start_still_on_its_way_does_not_hold_the_loop_at_its_later_answers():
    channel = ResultChannel()
    channel.starting("slow", 1)
    channel.after_starts()  # waits the bound once: `slow` has not begun
    channel.starting("quick", 1)
    channel.began("quick", 1)
    began = time.monotonic()
    channel.after_starts()  # only `quick` is this answer's, and it began
    assert time.monotonic() - began < ResultChannel.YIELD_S / 2


def test_an_end_handed_over_while_the_loop_waits_for_it_to_begin_ends_the_wait(monkeypatch):
    monkeypatch.setattr(ResultChannel, "YIELD_S", 5.0)
    channel = ResultChannel()
    channel.starting("build", 1)  # its task breaks before the command runs; its end comes from its future
    threading.Timer(0.02, lambda: channel.deliver(ended("build"))).start()
    began = time.monotonic()
    channel.after_starts()
    assert time.monotonic() - began < 2
