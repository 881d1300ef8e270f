"""What counts as progress for the stall clock.

A command that keeps printing the same thing is as stuck as one that prints nothing: a client
that cannot reach its server prints `Reconnecting... 1/5` again and again, a spinner redraws
itself, a countdown counts down. Yet builds, downloads and test runners show progress with lines
that differ only in their numbers: `[ 45/300] Compiling`, `downloaded 12 of 40`, `Epoch 3/10`.
So a line resets the stall clock when it is new, digits aside, among the last lines seen; or
when it is such a line again with its numbers advanced (compared in order: `tick-14` after
`tick-13`, `3/10` after `2/10`), unless it says it waits or tries again (`Reconnecting... 2/5`,
`retrying in 4s`, `waiting for ...`). Clock times and dates are no numbers here (a loop that
stamps the time on its lines does not advance). The same line with the same numbers, or numbers
that go back (a countdown), is a repeat. A line still being written (pytest's dots) is progress
as it grows. For an agent CLI with a JSON event stream, its events
decide instead: a tool call, an edit or model output is progress, an error event is not.
"""

from __future__ import annotations

import re
from collections import OrderedDict

from autodev.core.agents import AgentStream

DIGITS = re.compile(rb"\d+")
CLOCK_TIMES = re.compile(rb"\d{4}-\d{2}-\d{2}(?:[T ](?=\d))?|\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?")
WAITING = re.compile(rb"re-?connect|retr(y|ies|ying)\b|backing off|waiting", re.I)  # a line that says it makes no progress
LINE_END = re.compile(rb"[\r\n]")
REMEMBERED_LINES = 64  # distinct lines (digits aside) a repeat is looked for among
LONGEST_LINE = 4096  # bytes of one line compared (a longer one is cut)


class ProgressMeter:
    def __init__(self, stream: AgentStream | None = None):
        self.stream = stream
        self._recent: OrderedDict[bytes, tuple[int, ...]] = OrderedDict()  # each line's key, with its highest numbers
        self._partial = b""

    def feed(self, chunk: bytes) -> bool:
        """Whether this chunk of output shows progress."""
        before = b"" if LINE_END.search(chunk) else self._partial
        *lines, rest = LINE_END.split(self._partial + chunk)
        progress = any([self._line(line) for line in lines])  # a list: every line is read
        self._partial = rest[-LONGEST_LINE:]
        return progress or (len(rest) > len(before) and self._unfinished_is_new(rest))

    def _unfinished_is_new(self, rest: bytes) -> bool:
        """A line still being written that grew: progress unless it is how a repeat begins."""
        key = _key(rest)
        return bool(key) and not any(seen.startswith(key) for seen in self._recent)

    def _line(self, line: bytes) -> bool:
        if not line.strip():
            return False
        if self.stream is not None:
            verdict = self.stream.feed(line.decode(errors="replace"))
            if verdict is not None:
                return verdict
        return self._new(line)

    def _new(self, line: bytes) -> bool:
        """Whether `line` is progress (see the module's docstring); it is remembered."""
        key, numbers = _key(line), _numbers(line)
        highest = self._recent.get(key)
        progress = highest is None or (numbers > highest and not WAITING.search(key))
        self._recent[key] = numbers if highest is None or numbers > highest else highest
        self._recent.move_to_end(key)
        if len(self._recent) > REMEMBERED_LINES:
            self._recent.popitem(last=False)
        return progress


def _key(line: bytes) -> bytes:
    return DIGITS.sub(b"#", CLOCK_TIMES.sub(b"", line[:LONGEST_LINE]).strip())


def _numbers(line: bytes) -> tuple[int, ...]:
    return tuple(int(n) for n in DIGITS.findall(CLOCK_TIMES.sub(b"", line[:LONGEST_LINE])))
