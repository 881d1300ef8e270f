"""What counts as progress for the stall clock.

A command that keeps printing the same thing is as stuck as one that prints nothing: a model
that cannot be reached makes Codex print `Reconnecting... 2/5` every few seconds, a spinner
redraws itself. So a line resets the stall clock only when it is new: not equal, digits aside,
to one of the last lines seen. A line still being written (pytest's dots) is progress as it
grows. For an agent CLI with a JSON event stream, its events decide instead: a tool call, an
edit or model output is progress, an error event is not.
"""

from __future__ import annotations

import re
from collections import OrderedDict

from autodev.core.agents import AgentStream

DIGITS = re.compile(rb"\d+")
LINE_END = re.compile(rb"[\r\n]")
REMEMBERED_LINES = 64  # distinct lines a repeat is looked for among
LONGEST_LINE = 4096  # bytes of one line compared (a longer one is cut)


class ProgressMeter:
    def __init__(self, stream: AgentStream | None = None):
        self.stream = stream
        self._recent: OrderedDict[bytes, None] = OrderedDict()
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
        """Whether `line` (digits aside) is not among the last lines seen; it is remembered."""
        key = _key(line)
        seen = key in self._recent
        self._recent[key] = None
        self._recent.move_to_end(key)
        if len(self._recent) > REMEMBERED_LINES:
            self._recent.popitem(last=False)
        return not seen


def _key(line: bytes) -> bytes:
    return DIGITS.sub(b"#", line[:LONGEST_LINE].strip())
