"""Scripts for agents working at once: each request gets the next turn of the script whose text
(a route: a task's own words) its body holds, so parallel agents each follow their own script
whatever order their requests come in. Shared by the scripted model servers."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class Routes(Generic[T]):
    def __init__(self, routes: dict[str, list[T]] | None = None):
        self.turns = {text: list(turns) for text, turns in (routes or {}).items()}
        self._served = dict.fromkeys(self.turns, 0)
        self._lock = threading.Lock()

    def next_turn(self, body: str) -> T | None:
        """The next turn of the first route whose text is in `body` (its last repeats); None: no route matches."""
        route = next((text for text in self.turns if text in body), None)
        if route is None:
            return None
        with self._lock:
            n, self._served[route] = self._served[route], self._served[route] + 1
        turns = self.turns[route]
        return turns[min(n, len(turns) - 1)]
