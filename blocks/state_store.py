"""The state store: run sessions (`agent_sessions`) and every attempt of every step (`step_results`).

One schema, two backends (one file each): SQLite, the default that needs no set-up, and
PostgreSQL through psycopg 3 for several workers or machines. The SQL lives here once; a
backend only says how to connect, how to lock for a read-modify-write, and how its column
types are spelt.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from autodev.errors import EnvironmentProblem
from autodev.models import (
    CommandResult,
    Plan,
    RunStatus,
    SessionMetadata,
    SessionRecord,
    StepAttempt,
    utcnow,
)

# Each migration runs once, in order, inside one transaction; {json}, {ts} and {serial_pk}
# are the backend's spelling of a JSON document, a timestamp and an auto-increment key.
MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE agent_sessions (
                run_id TEXT PRIMARY KEY,
                project TEXT NOT NULL,
                status TEXT NOT NULL,
                workspace TEXT NOT NULL,
                flow_run_id TEXT,
                plan {json} NOT NULL,
                metadata {json} NOT NULL,
                created_at {ts} NOT NULL,
                updated_at {ts} NOT NULL)""",
            "CREATE INDEX agent_sessions_updated ON agent_sessions (updated_at)",
            """CREATE TABLE step_results (
                id {serial_pk},
                run_id TEXT NOT NULL REFERENCES agent_sessions (run_id),
                step_id TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                command TEXT NOT NULL,
                status TEXT NOT NULL,
                exit_code INTEGER,
                exit_reason TEXT,
                started_at {ts} NOT NULL,
                finished_at {ts} NOT NULL,
                duration_s DOUBLE PRECISION NOT NULL,
                output_bytes BIGINT NOT NULL,
                output_tail TEXT NOT NULL,
                log_path TEXT,
                UNIQUE (run_id, step_id, attempt))""",
            "CREATE INDEX step_results_finished ON step_results (finished_at)",
        ],
    ),
    (
        2,
        [
            # The final status of each step (succeeded, failed, skipped, blocked, ...), one row
            # per step, so a report never has to re-derive it from the attempts.
            """CREATE TABLE step_states (
                run_id TEXT NOT NULL REFERENCES agent_sessions (run_id),
                step_id TEXT NOT NULL,
                status TEXT NOT NULL,
                updated_at {ts} NOT NULL,
                PRIMARY KEY (run_id, step_id))""",
        ],
    ),
    (
        3,
        [
            # The watchdog and the metrics exporter look for sessions by status. (Attempt
            # totals need no index of their own: they are read by primary key, newest rows only.)
            "CREATE INDEX agent_sessions_status ON agent_sessions (status, updated_at)",
        ],
    ),
    (
        4,
        [
            # Every model call a run made: what it cost, for reports and metrics.
            """CREATE TABLE llm_usage (
                id {serial_pk},
                run_id TEXT NOT NULL REFERENCES agent_sessions (run_id),
                purpose TEXT NOT NULL,
                model TEXT NOT NULL,
                tokens INTEGER NOT NULL,
                cost_usd DOUBLE PRECISION NOT NULL,
                ts {ts} NOT NULL)""",
        ],
    ),
    (5, ["ALTER TABLE step_results ADD COLUMN breaker_tripped INTEGER NOT NULL DEFAULT 0"]),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]

SESSION_COLUMNS = "run_id, project, status, workspace, flow_run_id, plan, metadata, created_at, updated_at"
ATTEMPT_COLUMNS = (
    "run_id, step_id, attempt, command, status, exit_code, exit_reason, "
    "started_at, finished_at, duration_s, output_bytes, output_tail, log_path, breaker_tripped"
)


class StoreBackend(ABC):
    """Shared SQL over a DB-API connection; subclasses supply the dialect."""

    types: dict[str, str]  # {json}, {ts}, {serial_pk}
    for_update: str  # suffix that locks the selected row until the transaction ends

    def __init__(self) -> None:
        self._lock = threading.Lock()  # one connection per backend, shared by a run's threads

    # --- dialect -----------------------------------------------------------------------
    @abstractmethod
    def _transaction(self) -> Iterator[Any]:
        """A cursor inside one write-serialised transaction (context manager)."""

    @abstractmethod
    def _lock_migrations(self, cur: Any) -> None: ...

    @abstractmethod
    def _tables(self, cur: Any) -> set[str]: ...

    def _sql(self, query: str) -> str:
        return query.format(**self.types) if "{" in query else query

    def _ts(self, value: datetime) -> Any:
        return value

    def _json(self, value: Any) -> Any:
        return json.dumps(value)

    def close(self) -> None:
        pass

    # --- schema ------------------------------------------------------------------------
    def migrate(self) -> int:
        """Bring the schema to SCHEMA_VERSION; safe to call from several processes at once."""
        with self._transaction() as cur:
            self._lock_migrations(cur)
            if "schema_migrations" not in self._tables(cur):
                cur.execute(
                    self._sql("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at {ts} NOT NULL)")
                )
            cur.execute("SELECT version FROM schema_migrations")
            applied = {row[0] for row in cur.fetchall()}
            for version, statements in MIGRATIONS:
                if version in applied:
                    continue
                for statement in statements:
                    cur.execute(self._sql(statement))
                cur.execute(
                    self._sql("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)"),
                    (version, self._ts(utcnow())),
                )
        return SCHEMA_VERSION

    def schema_version(self) -> int:
        with self._transaction() as cur:
            if "schema_migrations" not in self._tables(cur):
                return 0
            cur.execute("SELECT MAX(version) FROM schema_migrations")
            return cur.fetchone()[0] or 0

    # --- sessions ----------------------------------------------------------------------
    def create_session(
        self, run_id: str, plan: Plan, workspace: str, flow_run_id: str | None, metadata: SessionMetadata | None = None
    ) -> None:
        now = self._ts(utcnow())
        with self._transaction() as cur:
            cur.execute(
                self._sql(
                    f"INSERT INTO agent_sessions ({SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, CAST(? AS {{json}}), "
                    "CAST(? AS {json}), ?, ?)"
                ),
                (
                    run_id,
                    plan.project,
                    "running",
                    workspace,
                    flow_run_id,
                    self._json(plan.model_dump(mode="json")),
                    self._json((metadata or SessionMetadata()).model_dump(mode="json")),
                    now,
                    now,
                ),
            )

    def update_session(
        self,
        run_id: str,
        mutate: Callable[[SessionMetadata], None] | None = None,
        status: RunStatus | None = None,
        plan: Plan | None = None,
        flow_run_id: str | None = None,
    ) -> SessionMetadata:
        """Read-modify-write the session's metadata atomically (row lock / write lock).

        `plan` replaces the run's effective plan (a person edited a command); `flow_run_id` is
        set when another flow run continues the session."""
        with self._transaction() as cur:
            cur.execute(
                self._sql(f"SELECT metadata, status FROM agent_sessions WHERE run_id = ?{self.for_update}"), (run_id,)
            )
            row = cur.fetchone()
            if row is None:
                raise KeyError(f"no session {run_id!r}")
            metadata = SessionMetadata.model_validate(_load_json(row[0]))
            if mutate:
                mutate(metadata)
            cur.execute(
                self._sql("UPDATE agent_sessions SET metadata = CAST(? AS {json}), status = ?, updated_at = ? WHERE run_id = ?"),
                (self._json(metadata.model_dump(mode="json")), status or row[1], self._ts(utcnow()), run_id),
            )
            if plan is not None:
                cur.execute(
                    self._sql("UPDATE agent_sessions SET plan = CAST(? AS {json}) WHERE run_id = ?"),
                    (self._json(plan.model_dump(mode="json")), run_id),
                )
            if flow_run_id is not None:
                cur.execute(self._sql("UPDATE agent_sessions SET flow_run_id = ? WHERE run_id = ?"), (flow_run_id, run_id))
        return metadata

    def get_session(self, run_id: str) -> SessionRecord | None:
        rows = self._select_sessions("WHERE run_id = ?", (run_id,))
        return rows[0] if rows else None

    def quiet_sessions(self, since: datetime) -> list[SessionRecord]:
        """Running sessions whose metadata nobody has written since `since` (every heartbeat
        writes it, so these are runs whose orchestrator died or hung)."""
        return self._select_sessions("WHERE status = ? AND updated_at < ?", ("running", self._ts(since)))

    def sessions_with_status(self, statuses: tuple[str, ...]) -> list[SessionRecord]:
        marks = ", ".join("?" * len(statuses))
        return self._select_sessions(f"WHERE status IN ({marks})", statuses)

    def recent_sessions(self, limit: int = 500) -> list[SessionRecord]:
        """The newest `limit` sessions, newest first."""
        return self._select_sessions("ORDER BY created_at DESC LIMIT ?", (limit,))

    def latest_session(self) -> SessionRecord | None:
        rows = self._select_sessions("ORDER BY created_at DESC LIMIT 1", ())
        return rows[0] if rows else None

    def _fetchall(self, query: str, params: tuple) -> list[tuple]:
        with self._transaction() as cur:
            cur.execute(self._sql(query), params)
            return cur.fetchall()

    def _select_sessions(self, where: str, params: tuple) -> list[SessionRecord]:
        rows = self._fetchall(f"SELECT {SESSION_COLUMNS} FROM agent_sessions {where}", params)
        return [
            SessionRecord(
                run_id=r[0],
                project=r[1],
                status=r[2],
                workspace=r[3],
                flow_run_id=r[4],
                plan=Plan.model_validate(_load_json(r[5])),
                metadata=SessionMetadata.model_validate(_load_json(r[6])),
                created_at=_load_ts(r[7]),
                updated_at=_load_ts(r[8]),
            )
            for r in rows
        ]

    # --- step states -------------------------------------------------------------------
    def set_step_states(self, run_id: str, states: dict[str, str]) -> None:
        with self._transaction() as cur:
            self._write_step_states(cur, run_id, states)

    def _write_step_states(self, cur, run_id: str, states: dict[str, str]) -> None:
        now = self._ts(utcnow())
        for step_id, status in states.items():
            cur.execute(
                self._sql(
                    "INSERT INTO step_states (run_id, step_id, status, updated_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (run_id, step_id) DO UPDATE SET status = excluded.status, "
                    "updated_at = excluded.updated_at"
                ),
                (run_id, step_id, status, now),
            )

    def step_states(self, run_id: str) -> dict[str, str]:
        return dict(self._fetchall("SELECT step_id, status FROM step_states WHERE run_id = ?", (run_id,)))

    # --- metrics -----------------------------------------------------------------------
    def attempt_totals(self, after_id: int, buckets: tuple[float, ...]) -> tuple[int, list[tuple]]:
        """Per status, for attempts with id > after_id: (status, count, sum of durations, breaker
        trips, count per duration bucket...). Returns the highest id seen, so the next scrape reads only
        what is new."""
        cases = ", ".join(f"SUM(CASE WHEN duration_s <= {b!r} THEN 1 ELSE 0 END)" for b in buckets)
        rows = self._fetchall(
            f"SELECT status, COUNT(*), SUM(duration_s), MAX(id), SUM(breaker_tripped), {cases} "
            "FROM step_results WHERE id > ? GROUP BY status",
            (after_id,),
        )
        last = max((r[3] for r in rows), default=after_id)
        return last, [(r[0], r[1], r[2] or 0.0, r[4] or 0, *r[5:]) for r in rows]

    def record_llm_usage(self, run_id: str, purpose: str, model: str, tokens: int, cost_usd: float) -> None:
        with self._transaction() as cur:
            cur.execute(
                self._sql("INSERT INTO llm_usage (run_id, purpose, model, tokens, cost_usd, ts) VALUES (?, ?, ?, ?, ?, ?)"),
                (run_id, purpose, model, tokens, cost_usd, self._ts(utcnow())),
            )

    def llm_usage(self, run_id: str) -> list[tuple[str, str, int, float]]:
        """(purpose, model, tokens, cost in USD) of each model call a run made, oldest first."""
        return self._fetchall(
            "SELECT purpose, model, tokens, cost_usd FROM llm_usage WHERE run_id = ? ORDER BY id", (run_id,)
        )

    def llm_totals(self) -> list[tuple[str, int, float]]:
        """(model, tokens, cost in USD) over every recorded call."""
        return self._fetchall("SELECT model, SUM(tokens), SUM(cost_usd) FROM llm_usage GROUP BY model", ())

    def session_counts(self) -> dict[str, int]:
        return dict(self._fetchall("SELECT status, COUNT(*) FROM agent_sessions GROUP BY status", ()))

    def running_sessions(self) -> list[tuple[str, str, datetime]]:
        """(run_id, project, last write) of every running session; every heartbeat writes."""
        rows = self._fetchall("SELECT run_id, project, updated_at FROM agent_sessions WHERE status = ?", ("running",))
        return [(r[0], r[1], _load_ts(r[2])) for r in rows]

    def blocked_step_count(self) -> int:
        return self._fetchall("SELECT COUNT(*) FROM step_states WHERE status = ?", ("blocked",))[0][0]

    # --- step results ------------------------------------------------------------------
    def record_attempt(self, attempt: StepAttempt, step_states: dict[str, str] | None = None) -> None:
        """Keep one attempt, and the step states it settles (the step's own, steps it skips), in
        one transaction."""
        r = attempt.result
        with self._transaction() as cur:
            cur.execute(
                self._sql(f"INSERT INTO step_results ({ATTEMPT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                (
                    attempt.run_id,
                    attempt.step_id,
                    attempt.attempt,
                    attempt.command,
                    r.status,
                    r.exit_code,
                    r.exit_reason,
                    self._ts(r.started_at),
                    self._ts(r.finished_at),
                    r.duration_s,
                    r.output_bytes,
                    r.output_tail,
                    r.log_path,
                    int(attempt.breaker_tripped),
                ),
            )
            if step_states:
                self._write_step_states(cur, attempt.run_id, step_states)

    def attempts(self, run_id: str) -> list[StepAttempt]:
        rows = self._fetchall(f"SELECT {ATTEMPT_COLUMNS} FROM step_results WHERE run_id = ? ORDER BY id", (run_id,))
        return [
            StepAttempt(
                run_id=r[0],
                step_id=r[1],
                attempt=r[2],
                command=r[3],
                result=CommandResult(
                    status=r[4],
                    exit_code=r[5],
                    exit_reason=r[6],
                    started_at=_load_ts(r[7]),
                    finished_at=_load_ts(r[8]),
                    output_bytes=r[10],
                    output_tail=r[11],
                    log_path=r[12],
                ),
                breaker_tripped=bool(r[13]),
            )
            for r in rows
        ]


def _load_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def _load_ts(value: Any) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


@contextmanager
def _unreachable_is_environment_problem(url_for_humans: str) -> Iterator[None]:
    try:
        yield
    except EnvironmentProblem:
        raise
    except Exception as exc:  # each driver has its own error classes
        raise EnvironmentProblem(
            f"state store {url_for_humans} is unreachable: {exc.__class__.__name__}: {str(exc).strip()[:300]}",
            "start the database or set AUTODEV_DATABASE_URL to a reachable one "
            "(the default sqlite:///~/.autodev/autodev.db needs no server)",
        ) from exc


class StateStore(Block):
    """Where autodev keeps runs and step results; the URL picks the backend."""

    _block_type_name = "autodev state store"
    _description = "sqlite:///PATH (default) or postgresql://USER:PASSWORD@HOST:PORT/DB"

    database_url: SecretStr = Field(description="sqlite:///PATH or postgresql://...")

    def connect(self) -> StoreBackend:
        """An open backend with its schema migrated, or EnvironmentProblem with the fix."""
        url = self.database_url.get_secret_value()
        shown = _redact_password(url)
        with _unreachable_is_environment_problem(shown):
            if url.startswith("sqlite:///"):
                from blocks.store_sqlite import SQLiteBackend

                backend: StoreBackend = SQLiteBackend(url.removeprefix("sqlite:///"))
            elif url.startswith(("postgresql://", "postgres://")):
                from blocks.store_postgres import PostgresBackend

                backend = PostgresBackend(url)
            else:
                from autodev.errors import BadInput

                raise BadInput(f"AUTODEV_DATABASE_URL {shown!r}: use sqlite:///PATH or postgresql://...")
            backend.migrate()
        return backend


def _redact_password(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url
