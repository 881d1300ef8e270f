"""SQLite backend of the state store: the default, a file under ~/.autodev, no server.

WAL mode lets readers (status, metrics) run beside a writer; `BEGIN IMMEDIATE` takes the write
lock up front so two processes doing read-modify-write on the same session never interleave.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from autodev.blocks.store.database import Database

BUSY_TIMEOUT_S = 30


class SQLiteDatabase(Database):
    types = {"json": "TEXT", "ts": "TEXT", "serial_pk": "INTEGER PRIMARY KEY AUTOINCREMENT", "p": "?"}
    for_update = ""  # BEGIN IMMEDIATE already holds the database's write lock

    def __init__(self, path: str):
        super().__init__()
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL is crash-safe for the database; it skips an fsync per commit, which
        # is most of a step's bookkeeping time. Only an OS crash could drop the newest commits.
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")

    def _lock_migrations(self, cur: Any) -> None:
        pass  # BEGIN IMMEDIATE serialises migrations too

    def _tables(self, cur: Any) -> set[str]:
        cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {row[0] for row in cur.fetchall()}

    def ts(self, value: datetime) -> str:
        return value.isoformat()

    def compact(self) -> None:
        with self._lock:
            self._conn.execute("VACUUM")  # SQLite keeps freed pages in the file until this

    def close(self) -> None:
        self._conn.close()
