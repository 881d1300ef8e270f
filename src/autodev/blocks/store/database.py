"""The state store's one SQL dialect layer: a connection, transactions, retries when the database
went away, the schema's migrations, and how each backend spells its types.

One schema, two backends (one file each): SQLite (`sqlite.py`), the default that needs no
set-up, and PostgreSQL through psycopg 3 (`postgres.py`) for several workers or machines. The
SQL is written once, in the modules of what the store keeps (`sessions.py`, `attempts.py`,
`leases.py`, `metrics.py`); in it, `{p}` stands for a parameter (`?` for SQLite, `%s` for
psycopg), so no query text is rewritten and an operator such as PostgreSQL's JSONB `?` stays
what it is; `{json}`, `{ts}` and `{for_update}` are the backend's spelling of a JSON document, a
timestamp and a row lock.
"""

from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, TypeVar

from autodev.blocks.store.schema import MIGRATIONS, SCHEMA_VERSION
from autodev.core.errors import EnvironmentProblem
from autodev.core.models import utcnow

T = TypeVar("T")
Cursor = Any  # a DB-API cursor: sqlite3's or psycopg's


class Database(ABC):
    """One connection, shared by a run's threads; subclasses supply the dialect."""

    types: dict[str, str]  # {json}, {ts}, {serial_pk}, and {p}: the parameter marker
    for_update: str  # what a SELECT ends with to lock its row until the transaction ends

    def __init__(self, retry_s: float = 60) -> None:
        self._lock = threading.Lock()
        self._spelt: dict[str, str] = {}
        self.retry_s = retry_s  # how long a lost connection is retried before the store gives up

    # --- the dialect ---------------------------------------------------------------------
    @abstractmethod
    def transaction(self) -> AbstractContextManager[Cursor]:
        """A cursor inside one write-serialised transaction."""

    @abstractmethod
    def _lock_migrations(self, cur: Cursor) -> None: ...

    @abstractmethod
    def _tables(self, cur: Cursor) -> set[str]: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def compact(self) -> None:
        """Give the space of deleted rows back to the file system, where the database does not by itself."""

    def _lost_connection(self, exc: Exception) -> bool:
        """True when `exc` says the connection to the database went away (worth a retry)."""
        return False

    def ts(self, value: datetime) -> Any:
        return value

    def json(self, value: Any) -> Any:
        return json.dumps(value)

    # --- running SQL ---------------------------------------------------------------------
    def execute(self, cur: Cursor, query: str, params: tuple = ()) -> Cursor:
        spelt = self._spelt.get(query)
        if spelt is None:
            spelt = self._spelt[query] = query.format(**self.types, for_update=self.for_update)
        cur.execute(spelt, params)
        return cur

    def atomic(self, work: Callable[[Cursor], T]) -> T:
        """`work(cursor)` in one transaction. When the connection goes away (the database
        restarted), the transaction was rolled back: it is tried again, with backoff, for up to
        `retry_s`; then EnvironmentProblem says the store is unreachable and the run can resume."""
        deadline, pause = None, 0.2
        while True:
            try:
                with self.transaction() as cur:
                    return work(cur)
            except Exception as exc:
                if not self._lost_connection(exc):
                    raise
                now = time.monotonic()
                deadline = deadline or now + self.retry_s
                if now >= deadline:
                    raise EnvironmentProblem(
                        f"the state store did not answer for {self.retry_s:g}s ({exc.__class__.__name__}: {str(exc).strip()[:200]})",
                        "start the database again; then `autodev resume RUN_ID` continues the run where it stopped",
                    ) from exc
                time.sleep(min(pause, deadline - now))
                pause = min(pause * 2, 5.0)

    def fetchall(self, query: str, params: tuple = ()) -> list[Any]:
        return self.atomic(lambda cur: self.execute(cur, query, params).fetchall())

    def write(self, query: str, params: tuple = ()) -> int:
        """One statement in its own transaction; how many rows it changed."""
        return self.atomic(lambda cur: self.execute(cur, query, params).rowcount)

    # --- the schema ----------------------------------------------------------------------
    def migrate(self) -> int:
        """Bring the schema to SCHEMA_VERSION; safe to call from several processes at once."""
        with self.transaction() as cur:
            self._lock_migrations(cur)
            if "schema_migrations" not in self._tables(cur):
                self.execute(cur, "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at {ts} NOT NULL)")
            applied = {row[0] for row in self.execute(cur, "SELECT version FROM schema_migrations").fetchall()}
            for version, statements in MIGRATIONS:
                if version in applied:
                    continue
                for statement in statements:
                    self.execute(cur, statement)
                self.execute(cur, "INSERT INTO schema_migrations (version, applied_at) VALUES ({p}, {p})", (version, self.ts(utcnow())))
        return SCHEMA_VERSION

    def schema_version(self) -> int:
        def work(cur: Cursor) -> int:
            if "schema_migrations" not in self._tables(cur):
                return 0
            return self.execute(cur, "SELECT MAX(version) FROM schema_migrations").fetchone()[0] or 0

        return self.atomic(work)


def load_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def load_ts(value: Any) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value
