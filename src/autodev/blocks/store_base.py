"""The state store's schema and SQL: run sessions (`agent_sessions`), every attempt of every
step (`step_results`), step states and model calls.

One schema, two backends (one file each): SQLite (`src/autodev/blocks/store_sqlite.py`), the default that
needs no set-up, and PostgreSQL through psycopg 3 (`src/autodev/blocks/store_postgres.py`) for several
workers or machines. The SQL lives here once; a backend says how to connect, how to lock for a
read-modify-write, and how its types and its parameter marker are spelt. In the SQL, `{p}`
stands for a parameter (`?` for SQLite, `%s` for psycopg), so no query text is rewritten and
an operator such as PostgreSQL's JSONB `?` stays what it is. The methods take and return the
models of `src/autodev/core/models.py` and `src/autodev/core/session.py`.
"""

from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from autodev.blocks.store_schema import MIGRATIONS, SCHEMA_VERSION
from autodev.core.errors import EnvironmentProblem
from autodev.core.models import AgentReport, CommandResult, LLMUsage, Plan, RunStatus, StepAttempt, utcnow
from autodev.core.session import AttemptTotals, Lease, LLMCall, RunBeat, SessionMetadata, SessionRecord, StatusTotals

T = TypeVar("T")


SESSION_COLUMNS = "run_id, project, status, workspace, flow_run_id, metadata, created_at, updated_at, owner, lease_until"
ATTEMPT_COLUMNS = (
    "run_id, step_id, attempt, command, status, exit_code, exit_reason, "
    "started_at, finished_at, duration_s, output_bytes, output_tail, log_path, breaker_tripped, agent"
)


class StoreBackend(ABC):
    """Shared SQL over a DB-API connection; subclasses supply the dialect."""

    types: dict[str, str]  # {json}, {ts}, {serial_pk}, and {p}: the parameter marker
    for_update: str  # what a SELECT ends with to lock its row until the transaction ends

    def __init__(self, retry_s: float = 60) -> None:
        self._lock = threading.Lock()  # one connection per backend, shared by a run's threads
        self._spelt: dict[str, str] = {}
        self.retry_s = retry_s  # how long a lost connection is retried before the store gives up

    # --- dialect -----------------------------------------------------------------------
    @abstractmethod
    def _transaction(self) -> Any:
        """A cursor inside one write-serialised transaction (a context manager)."""

    @abstractmethod
    def _lock_migrations(self, cur: Any) -> None: ...

    @abstractmethod
    def _tables(self, cur: Any) -> set[str]: ...

    def _lost_connection(self, exc: Exception) -> bool:
        """True when `exc` says the connection to the database went away (worth a retry)."""
        return False

    def _sql(self, query: str) -> str:
        """The query in this backend's spelling (kept, so each text is formatted once)."""
        spelt = self._spelt.get(query)
        if spelt is None:
            spelt = self._spelt[query] = query.format(**self.types, for_update=self.for_update)
        return spelt

    def _ts(self, value: datetime) -> Any:
        return value

    def _json(self, value: Any) -> Any:
        return json.dumps(value)

    @abstractmethod
    def close(self) -> None: ...

    def _execute(self, cur: Any, query: str, params: tuple = ()) -> Any:
        cur.execute(self._sql(query), params)
        return cur

    def _atomic(self, work: Callable[[Any], T]) -> T:
        """`work(cursor)` in one transaction. When the connection goes away (the database
        restarted), the transaction was rolled back: it is tried again, with backoff, for up to
        `retry_s`; then EnvironmentProblem says the store is unreachable and the run can resume."""
        deadline, pause = None, 0.2
        while True:
            try:
                with self._transaction() as cur:
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

    def _fetchall(self, query: str, params: tuple = ()) -> list[Any]:
        return self._atomic(lambda cur: self._execute(cur, query, params).fetchall())

    def _write(self, query: str, params: tuple = ()) -> int:
        """One statement in its own transaction; how many rows it changed."""
        return self._atomic(lambda cur: self._execute(cur, query, params).rowcount)

    # --- schema ------------------------------------------------------------------------
    def migrate(self) -> int:
        """Bring the schema to SCHEMA_VERSION; safe to call from several processes at once."""
        with self._transaction() as cur:
            self._lock_migrations(cur)
            if "schema_migrations" not in self._tables(cur):
                self._execute(cur, "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at {ts} NOT NULL)")
            applied = {row[0] for row in self._execute(cur, "SELECT version FROM schema_migrations").fetchall()}
            for version, statements in MIGRATIONS:
                if version in applied:
                    continue
                for statement in statements:
                    self._execute(cur, statement)
                self._execute(
                    cur, "INSERT INTO schema_migrations (version, applied_at) VALUES ({p}, {p})", (version, self._ts(utcnow()))
                )
        return SCHEMA_VERSION

    def schema_version(self) -> int:
        def work(cur: Any) -> int:
            if "schema_migrations" not in self._tables(cur):
                return 0
            return self._execute(cur, "SELECT MAX(version) FROM schema_migrations").fetchone()[0] or 0

        return self._atomic(work)

    # --- sessions ----------------------------------------------------------------------
    def create_session(
        self,
        run_id: str,
        plan: Plan,
        workspace: str,
        flow_run_id: str | None,
        metadata: SessionMetadata | None = None,
        lease: Lease | None = None,
    ) -> None:
        now = utcnow()
        values = (
            run_id, plan.project, "running", workspace, flow_run_id,
            self._json((metadata or SessionMetadata()).model_dump(mode="json")), self._ts(now), self._ts(now),
            lease.owner if lease else None, self._ts(now + timedelta(seconds=lease.seconds)) if lease else None,
        )  # fmt: skip

        def work(cur: Any) -> None:
            self._execute(
                cur,
                f"INSERT INTO agent_sessions ({SESSION_COLUMNS}) VALUES ({{p}}, {{p}}, {{p}}, {{p}}, {{p}}, "
                "CAST({p} AS {json}), {p}, {p}, {p}, {p}) ON CONFLICT (run_id) DO NOTHING",
                values,
            )
            self._execute(
                cur, "INSERT INTO session_plans (run_id, plan) VALUES ({p}, CAST({p} AS {json})) ON CONFLICT (run_id) DO NOTHING",
                (run_id, self._json(plan.model_dump(mode="json"))),
            )  # fmt: skip

        self._atomic(work)

    def update_session(
        self,
        run_id: str,
        mutate: Callable[[SessionMetadata], None] | None = None,
        status: RunStatus | None = None,
        plan: Plan | None = None,
        flow_run_id: str | None = None,
        lease: Lease | None = None,
        step_states: dict[str, str] | None = None,
    ) -> SessionMetadata:
        """Read-modify-write the session's metadata atomically (row lock / write lock), with the
        step states it settles in the same transaction.

        `plan` replaces the run's effective plan (a person edited a command); `flow_run_id` is
        set when another flow run continues the session. With `lease`, the write is refused
        (LeaseLost) when another process holds the run now (the holder renews its lease apart:
        `renew_lease`)."""

        def work(cur: Any) -> SessionMetadata:
            if step_states:
                self._write_step_states(cur, run_id, step_states)
            return self._update(cur, run_id, mutate, status, plan, flow_run_id, lease)

        return self._atomic(work)

    def _check_owner(self, cur: Any, run_id: str, lease: Lease) -> None:
        row = self._execute(cur, "SELECT owner FROM agent_sessions WHERE run_id = {p}{for_update}", (run_id,)).fetchone()
        if row is None or row[0] != lease.owner:
            raise LeaseLost(run_id, row[0] if row else None)

    def _update(
        self,
        cur: Any,
        run_id: str,
        mutate: Callable[[SessionMetadata], None] | None,
        status: RunStatus | None = None,
        plan: Plan | None = None,
        flow_run_id: str | None = None,
        lease: Lease | None = None,
    ) -> SessionMetadata:
        row = self._execute(
            cur, "SELECT metadata, status, owner FROM agent_sessions WHERE run_id = {p}{for_update}", (run_id,)
        ).fetchone()
        if row is None:
            raise KeyError(f"no session {run_id!r}")
        if lease is not None and row[2] != lease.owner:
            raise LeaseLost(run_id, row[2])
        metadata = SessionMetadata.model_validate(_load_json(row[0]))
        if mutate:
            mutate(metadata)
        self._execute(
            cur,
            "UPDATE agent_sessions SET metadata = CAST({p} AS {json}), status = {p}, updated_at = {p} WHERE run_id = {p}",
            (self._json(metadata.model_dump(mode="json")), status or row[1], self._ts(utcnow()), run_id),
        )
        if plan is not None:
            self._execute(
                cur,
                "UPDATE session_plans SET plan = CAST({p} AS {json}) WHERE run_id = {p}",
                (self._json(plan.model_dump(mode="json")), run_id),
            )
        if flow_run_id is not None:
            self._execute(cur, "UPDATE agent_sessions SET flow_run_id = {p} WHERE run_id = {p}", (flow_run_id, run_id))
        return metadata

    # --- who runs a session (the lease) -------------------------------------------------
    def take_lease(self, run_id: str, lease: Lease, replacing: str | None = None) -> bool:
        """Hold the run for `lease.owner`, unless another process holds it and its hold has not
        run out; `replacing` names a holder known to be dead (its hold is taken over at once).
        True when the run is now held by the owner. Two processes asking at once: one wins."""
        now = utcnow()
        changed = self._write(
            "UPDATE agent_sessions SET owner = {p}, lease_until = {p} WHERE run_id = {p} "
            "AND (owner IS NULL OR owner = {p} OR owner = {p} OR lease_until IS NULL OR lease_until < {p})",
            (lease.owner, self._ts(now + timedelta(seconds=lease.seconds)), run_id, lease.owner, replacing, self._ts(now)),
        )
        return changed == 1

    def renew_lease(self, run_id: str, lease: Lease) -> bool:
        """Extend the owner's hold (a process that is alive but not writing, e.g. while it waits
        for a person); False when the owner no longer holds the run."""
        until = self._ts(utcnow() + timedelta(seconds=lease.seconds))
        return self._write(
            "UPDATE agent_sessions SET lease_until = {p} WHERE run_id = {p} AND owner = {p}", (until, run_id, lease.owner)
        ) == 1

    def release_lease(self, run_id: str, owner: str) -> None:
        """Nobody runs the session any more (it ended, or waits blocked for a later resume)."""
        self._write(
            "UPDATE agent_sessions SET owner = NULL, lease_until = NULL WHERE run_id = {p} AND owner = {p}", (run_id, owner)
        )

    def get_session(self, run_id: str) -> SessionRecord | None:
        rows = self._select_sessions("WHERE s.run_id = {p}", (run_id,))
        return rows[0] if rows else None

    def sessions(self, statuses: tuple[RunStatus, ...], quiet_since: datetime | None = None) -> list[SessionRecord]:
        """Sessions with one of these statuses; with `quiet_since`, only those nobody has written
        since then (every heartbeat writes, so these are runs whose orchestrator died or hung)."""
        where = f"WHERE status IN ({', '.join(['{p}'] * len(statuses))})"
        if quiet_since is None:
            return self._select_sessions(where, statuses)
        return self._select_sessions(where + " AND updated_at < {p}", (*statuses, self._ts(quiet_since)))

    def latest_session(self) -> SessionRecord | None:
        rows = self.recent_sessions(1)
        return rows[0] if rows else None

    def recent_sessions(self, limit: int = 500) -> list[SessionRecord]:
        """The newest `limit` sessions, newest first."""
        return self._select_sessions("ORDER BY created_at DESC LIMIT {p}", (limit,))

    def _select_sessions(self, where: str, params: tuple) -> list[SessionRecord]:
        columns = ", ".join(f"s.{c}" for c in SESSION_COLUMNS.split(", "))
        rows = self._fetchall(
            f"SELECT {columns}, p.plan FROM agent_sessions s JOIN session_plans p ON p.run_id = s.run_id {where}", params
        )
        return [
            SessionRecord(
                **dict(zip(("run_id", "project", "status", "workspace", "flow_run_id"), r[:5], strict=True)),
                metadata=SessionMetadata.model_validate(_load_json(r[5])),
                created_at=_load_ts(r[6]),
                updated_at=_load_ts(r[7]),
                owner=r[8],
                lease_until=_load_ts(r[9]) if r[9] is not None else None,
                plan=Plan.model_validate(_load_json(r[10])),
            )
            for r in rows
        ]

    # --- step states -------------------------------------------------------------------
    def set_step_states(self, run_id: str, states: dict[str, str]) -> None:
        self._atomic(lambda cur: self._write_step_states(cur, run_id, states))

    def _write_step_states(self, cur: Any, run_id: str, states: dict[str, str]) -> None:
        now = self._ts(utcnow())
        for step_id, status in states.items():
            self._execute(
                cur,
                "INSERT INTO step_states (run_id, step_id, status, updated_at) VALUES ({p}, {p}, {p}, {p}) "
                "ON CONFLICT (run_id, step_id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at",
                (run_id, step_id, status, now),
            )

    def step_states(self, run_id: str) -> dict[str, str]:
        return dict(self._fetchall("SELECT step_id, status FROM step_states WHERE run_id = {p}", (run_id,)))

    # --- step results ------------------------------------------------------------------
    def record_attempt(
        self,
        attempt: StepAttempt,
        step_states: dict[str, str] | None = None,
        mutate: Callable[[SessionMetadata], None] | None = None,
        lease: Lease | None = None,
    ) -> None:
        """Keep one attempt, the step states it settles (the step's own, steps it skips) and the
        metadata changes that must not be lost with it (`mutate`: its blocker, a feedback
        round's evidence), in one transaction. An attempt is kept once: a write tried again after
        its commit was acknowledged too late (the database restarted) finds it there and changes
        nothing. With `lease`, refused (LeaseLost) when another process holds the run now."""
        r = attempt.result
        values = (
            attempt.run_id, attempt.step_id, attempt.attempt, attempt.command, r.status, r.exit_code, r.exit_reason,
            self._ts(r.started_at), self._ts(r.finished_at), r.duration_s, r.output_bytes, r.output_tail, r.log_path,
            int(attempt.breaker_tripped), r.agent.model_dump_json() if r.agent else None,
        )

        def work(cur: Any) -> None:
            if lease is not None:
                self._check_owner(cur, attempt.run_id, lease)
            inserted = self._execute(
                cur,
                f"INSERT INTO step_results ({ATTEMPT_COLUMNS}) VALUES ({', '.join(['{p}'] * 15)}) "
                "ON CONFLICT (run_id, step_id, attempt) DO NOTHING",
                values,
            ).rowcount
            if inserted != 1:
                return
            if step_states:
                self._write_step_states(cur, attempt.run_id, step_states)
            if mutate is not None:
                self._update(cur, attempt.run_id, mutate)

        self._atomic(work)

    def attempts(self, run_id: str) -> list[StepAttempt]:
        rows = self._fetchall(f"SELECT {ATTEMPT_COLUMNS} FROM step_results WHERE run_id = {{p}} ORDER BY id", (run_id,))
        return [
            StepAttempt(
                run_id=r[0], step_id=r[1], attempt=r[2], command=r[3], breaker_tripped=bool(r[13]),
                result=CommandResult(
                    status=r[4], exit_code=r[5], exit_reason=r[6], started_at=_load_ts(r[7]), finished_at=_load_ts(r[8]),
                    output_bytes=r[10], output_tail=r[11], log_path=r[12],
                    agent=AgentReport.model_validate_json(r[14]) if r[14] else None,
                ),
            )  # fmt: skip
            for r in rows
        ]

    # --- model calls -------------------------------------------------------------------
    def record_llm_usage(self, run_id: str, purpose: str, usage: LLMUsage) -> None:
        self._write(
            "INSERT INTO llm_usage (run_id, purpose, model, tokens, cost_usd, ts) VALUES ({p}, {p}, {p}, {p}, {p}, {p})",
            (run_id, purpose, usage.model, usage.tokens, usage.cost_usd, self._ts(utcnow())),
        )

    def llm_usage(self, run_id: str) -> list[LLMCall]:
        """Every model call a run made, oldest first."""
        rows = self._fetchall("SELECT purpose, model, tokens, cost_usd FROM llm_usage WHERE run_id = {p} ORDER BY id", (run_id,))
        return [LLMCall(purpose=r[0], model=r[1], tokens=r[2], cost_usd=r[3]) for r in rows]

    def llm_totals(self) -> list[LLMUsage]:
        """Tokens and cost of every recorded call, summed per model."""
        rows = self._fetchall("SELECT model, SUM(tokens), SUM(cost_usd) FROM llm_usage GROUP BY model")
        return [LLMUsage(model=r[0], tokens=r[1] or 0, cost_usd=r[2] or 0.0) for r in rows]

    # --- metrics -----------------------------------------------------------------------
    def attempt_totals(self, after_id: int, buckets: tuple[float, ...]) -> AttemptTotals:
        """Per status, the attempts with id > after_id, summed; `last_id` is the highest id seen,
        so the next read takes only what is new."""
        cases = ", ".join(f"SUM(CASE WHEN duration_s <= {b!r} THEN 1 ELSE 0 END)" for b in buckets)
        rows = self._fetchall(
            f"SELECT status, COUNT(*), SUM(duration_s), MAX(id), SUM(breaker_tripped), {cases} "
            "FROM step_results WHERE id > {p} GROUP BY status",
            (after_id,),
        )
        return AttemptTotals(
            last_id=max((r[3] for r in rows), default=after_id),
            by_status=[
                StatusTotals(status=r[0], count=r[1], seconds=r[2] or 0.0, breaker_trips=r[4] or 0, per_bucket=list(r[5:]))
                for r in rows
            ],
        )

    def session_counts(self) -> dict[str, int]:
        return dict(self._fetchall("SELECT status, COUNT(*) FROM agent_sessions GROUP BY status"))

    def running_sessions(self) -> list[RunBeat]:
        """Every running session and its last write (every heartbeat writes)."""
        rows = self._fetchall("SELECT run_id, project, updated_at FROM agent_sessions WHERE status = {p}", ("running",))
        return [RunBeat(run_id=r[0], project=r[1], updated_at=_load_ts(r[2])) for r in rows]

    def blocked_step_count(self) -> int:
        return self._fetchall("SELECT COUNT(*) FROM step_states WHERE status = {p}", ("blocked",))[0][0]

    # --- retention ---------------------------------------------------------------------
    def delete_run(self, run_id: str) -> int:
        """Remove a run and everything recorded of it, in one transaction; its attempts' count."""

        def work(cur: Any) -> dict[str, int]:  # children first: they reference the session
            tables = ("llm_usage", "step_states", "step_results", "session_plans", "agent_sessions")
            return {t: self._execute(cur, f"DELETE FROM {t} WHERE run_id = {{p}}", (run_id,)).rowcount for t in tables}

        return self._atomic(work)["step_results"]

    @abstractmethod
    def compact(self) -> None:
        """Give the space of deleted rows back to the file system, where the database does not by itself."""


def _load_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def _load_ts(value: Any) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


class LeaseLost(EnvironmentProblem):
    """Another process holds the run now (it was resumed elsewhere): this one must stop writing it."""

    exit_code = 3

    def __init__(self, run_id: str, owner: str | None):
        super().__init__(
            f"run {run_id} is held by another process now (flow run {owner or 'none'}): this one stops",
            f"follow it with `autodev status {run_id}`",
        )
