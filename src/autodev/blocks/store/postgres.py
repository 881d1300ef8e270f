"""PostgreSQL backend of the state store (psycopg 3), for several workers or machines.

Read-modify-write of a session takes `SELECT ... FOR UPDATE`, so concurrent writers queue on
the row instead of overwriting each other; migrations take an advisory lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from autodev.blocks.store.database import Database

MIGRATION_LOCK_ID = 0x617574_6F646576  # "autodev"


class PostgresDatabase(Database):
    types = {"json": "JSONB", "ts": "TIMESTAMPTZ", "serial_pk": "BIGSERIAL PRIMARY KEY", "p": "%s"}
    for_update = " FOR UPDATE"

    def __init__(self, url: str, retry_s: float = 60):
        super().__init__(retry_s)
        self.url = url.replace("postgres://", "postgresql://", 1)
        self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Cursor]:
        with self._lock:
            if self._conn.closed or self._conn.broken:
                # The server restarted or the connection dropped: one fresh connection, then carry on.
                self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            with self._conn.transaction(), self._conn.cursor() as cur:
                yield cur

    def _lock_migrations(self, cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))

    def _tables(self, cur: Any) -> set[str]:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        return {row[0] for row in cur.fetchall()}

    def _lost_connection(self, exc: Exception) -> bool:
        # The server restarted or the network dropped (psycopg reports both as OperationalError).
        return isinstance(exc, psycopg.OperationalError)

    def compact(self) -> None:
        pass  # autovacuum reuses the space of deleted rows

    def close(self) -> None:
        self._conn.close()
