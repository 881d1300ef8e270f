"""Arguments handed to tasks as they are."""

from __future__ import annotations

from typing import TypeVar, cast

from prefect.utilities.annotations import quote

T = TypeVar("T")


def as_is(value: T) -> T:
    """`value` handed to a task as it is, typed as itself: Prefect does not look inside it for
    futures to resolve (a plan of 10,000 steps, a sandbox's client), as `quote()` says."""
    return cast(T, quote(value))
