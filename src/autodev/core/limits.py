"""A provider's usage or rate limit, as an agent (or any command) tells it, and when it resets.

Codex CLI and Claude Code stop when the provider's limit is reached, and often say when it
resets. A step stopped so is not failing: it waits until the reset and goes on (`rules.py`'s
LimitReached), bounded by AUTODEV_LIMIT_WAIT_MAX_S. What is read here, from the end of the
output and the agent's error events (newest last):

- that it is a limit: an HTTP status 429, `Too Many Requests`, `rate limit`, `usage limit`,
  `insufficient_quota` / `exceeded your quota`, `limit reached`, `overloaded_error` (read only in
  the agent's own error events when its preset has them, so a test's output cannot pass for one);
- when it resets, if said: `retry after 20 seconds` (`Retry-After: 20`), `try again in 1m30s` /
  `in 20 seconds` / `in 2 hours`, `resets in 45 minutes`, `try again at 3:04 PM` / `resets 3pm`
  / `resets at 15:04` (in UTC, the sandbox's clock: the end of that minute, today's unless it is
  more than an hour gone, then tomorrow's), an ISO time
  (`2026-12-06T04:00:00Z`), or Claude Code's `usage limit reached|1765000000` (epoch seconds).

No reset time said: the wait is `NO_RESET_WAIT_S` (then, if the limit is still there, again).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

NO_RESET_WAIT_S = 60.0  # how long to wait when the provider does not say when its limit resets
SAYS_LIMIT = re.compile(
    r"(?:status|http|error|code|retry \d+/\d+)[^0-9\n]{0,20}\b429\b|too many requests|rate.?limit|usage limit|"
    r"insufficient_quota|exceeded your (?:current )?quota|limit reached|overloaded_error",
    re.I,
)  # a provider's words: not a test's line number 429, an "overloaded" C++ call or a disk quota
UNITS = {"ms": 0.001, "s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hr": 3600, "hour": 3600, "d": 86400, "day": 86400}
DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|hours?|hrs?|h|minutes?|mins?|m|seconds?|secs?|s|days?|d)(?![a-z])", re.I)
RELATIVE = re.compile(r"(?:retry.after[\":\s]*|(?:try again|retry|resets?)\s+(?:in|after)\s+)((?:\d+(?:\.\d+)?\s*[a-z]*[\s,]*(?:and\s+)?)+)", re.I)
CLOCK = re.compile(r"(?:try again|resets?|available)\s+(at\s+)?(\d{1,2})(?::(\d{2}))?\s*([ap]\.?m\b\.?)?", re.I)
ISO = re.compile(r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)")
EPOCH = re.compile(r"limit reached\|(\d{10})\b", re.I)


class LimitHit(BaseModel):
    """A command stopped by its provider's limit: what it said, and when the limit resets."""

    line: str  # the line that says so (masked like the rest of the output)
    resets_at: datetime | None = None  # None: the provider did not say


def limit_hit(lines: list[str], now: datetime) -> LimitHit | None:
    """The newest line that says a limit stopped the command, with its reset time; None when none does."""
    for line in reversed(lines):
        if SAYS_LIMIT.search(line):
            return LimitHit(line=line.strip()[:500], resets_at=reset_time(line, now))
    return None


def reset_time(line: str, now: datetime) -> datetime | None:
    """When the limit `line` speaks of resets, if it says (see the module's docstring)."""
    if (match := RELATIVE.search(line)) and (seconds := _seconds(match.group(1))) is not None:
        return now + timedelta(seconds=seconds)
    if match := EPOCH.search(line):
        return datetime.fromtimestamp(int(match.group(1)), UTC)
    if match := ISO.search(line[line.lower().find("reset") :] if "reset" in line.lower() else ""):  # a stamp the reset names, not the log's
        stamp = datetime.fromisoformat(match.group(1).replace("Z", "+00:00").replace(" ", "T"))
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    if (match := CLOCK.search(line)) and (match.group(1) or match.group(3) or match.group(4)):  # "at", or it looks like a time
        return _next_time_of_day(now, int(match.group(2)), int(match.group(3) or 0), match.group(4))
    return None


def _seconds(text: str) -> float | None:
    """`1m30s`, `20 seconds`, `2 hours and 5 minutes`, a bare `20` (seconds, as Retry-After)."""
    parts = DURATION.findall(text)
    if parts:
        return sum(float(n) * UNITS[unit.lower().rstrip("s") if unit.lower() not in UNITS else unit.lower()] for n, unit in parts)
    bare = re.match(r"\s*(\d+(?:\.\d+)?)", text)
    return float(bare.group(1)) if bare else None


def _next_time_of_day(now: datetime, hour: int, minute: int, meridiem: str | None) -> datetime | None:
    """The end of the minute a time of day names (the reset is within it): today's, or
    tomorrow's when today's is more than an hour gone (a 5-hour window resets later, not earlier)."""
    if meridiem:
        hour = hour % 12 + (12 if meridiem.lower().startswith("p") else 0)
    if not (0 <= hour < 24 and 0 <= minute < 60):
        return None
    end = now.astimezone(UTC).replace(hour=hour, minute=minute, second=0, microsecond=0) + timedelta(minutes=1)
    return end if end > now - timedelta(hours=1) else end + timedelta(days=1)
