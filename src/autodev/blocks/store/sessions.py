"""What the store keeps of each run: its session (`agent_sessions`: status, workspace, flow run,
lease, the metadata document) and its effective plan (`session_plans`)."""

from __future__ import annotations

from datetime import datetime, timedelta

from autodev.blocks.store.database import Cursor, Database, load_json, load_ts
from autodev.core.models import Plan, RunStatus, utcnow
from autodev.core.session import Lease, SessionMetadata, SessionRecord

SESSION_COLUMNS = "run_id, project, status, workspace, flow_run_id, metadata, created_at, updated_at, owner, lease_until"


class Sessions:
    def __init__(self, db: Database):
        self.db = db

    def create(
        self, run_id: str, plan: Plan, workspace: str, flow_run_id: str | None,
        metadata: SessionMetadata | None = None, lease: Lease | None = None,
    ) -> None:  # fmt: skip
        now = utcnow()
        values = (
            run_id, plan.project, "running", workspace, flow_run_id,
            self.db.json((metadata or SessionMetadata()).model_dump(mode="json")), self.db.ts(now), self.db.ts(now),
            lease.owner if lease else None, self.db.ts(now + timedelta(seconds=lease.seconds)) if lease else None,
        )  # fmt: skip

        def work(cur: Cursor) -> None:
            self.db.execute(
                cur, f"INSERT INTO agent_sessions ({SESSION_COLUMNS}) VALUES ({{p}}, {{p}}, {{p}}, {{p}}, {{p}}, "
                "CAST({p} AS {json}), {p}, {p}, {p}, {p}) ON CONFLICT (run_id) DO NOTHING", values,
            )  # fmt: skip
            self.db.execute(
                cur, "INSERT INTO session_plans (run_id, plan) VALUES ({p}, CAST({p} AS {json})) ON CONFLICT (run_id) DO NOTHING",
                (run_id, self.db.json(plan.model_dump(mode="json"))),
            )  # fmt: skip

        self.db.atomic(work)

    def update(
        self, cur: Cursor, run_id: str, metadata: SessionMetadata | None, status: RunStatus | None,
        flow_run_id: str | None, owner: str | None,
    ) -> int:  # fmt: skip
        """Set what is given (and `updated_at`) inside a transaction; with `owner`, only while that
        process holds the run. How many rows changed (0: no such run, or not held by `owner`)."""
        sets, params = ["updated_at = {p}"], [self.db.ts(utcnow())]
        for column, value in (("status", status), ("flow_run_id", flow_run_id)):
            if value is not None:
                sets.append(f"{column} = {{p}}")
                params.append(value)
        if metadata is not None:
            sets.append("metadata = CAST({p} AS {json})")
            params.append(self.db.json(metadata.model_dump(mode="json")))
        where = "run_id = {p}" + (" AND owner = {p}" if owner is not None else "")
        params += [run_id, *([owner] if owner is not None else [])]
        return self.db.execute(cur, f"UPDATE agent_sessions SET {', '.join(sets)} WHERE {where}", tuple(params)).rowcount

    def replace_plan(self, cur: Cursor, run_id: str, plan: Plan) -> None:
        self.db.execute(cur, "UPDATE session_plans SET plan = CAST({p} AS {json}) WHERE run_id = {p}",
                        (self.db.json(plan.model_dump(mode="json")), run_id))  # fmt: skip

    def owner(self, cur: Cursor, run_id: str) -> str | None:
        """The process that holds the run (None: nobody); KeyError when there is no such run."""
        row = self.db.execute(cur, "SELECT owner FROM agent_sessions WHERE run_id = {p}", (run_id,)).fetchone()
        if row is None:
            raise KeyError(f"no session {run_id!r}")
        return row[0]

    # --- read ---------------------------------------------------------------------------
    def get(self, run_id: str) -> SessionRecord | None:
        rows = self._select("WHERE s.run_id = {p}", (run_id,))
        return rows[0] if rows else None

    def with_status(self, statuses: tuple[RunStatus, ...], quiet_since: datetime | None = None) -> list[SessionRecord]:
        """Sessions with one of these statuses; with `quiet_since`, only those nobody has written
        since then (every heartbeat writes, so these are runs whose orchestrator died or hung)."""
        where = f"WHERE status IN ({', '.join(['{p}'] * len(statuses))})"
        if quiet_since is None:
            return self._select(where, statuses)
        return self._select(where + " AND updated_at < {p}", (*statuses, self.db.ts(quiet_since)))

    def latest(self) -> SessionRecord | None:
        rows = self.recent(1)
        return rows[0] if rows else None

    def recent(self, limit: int = 500) -> list[SessionRecord]:
        """The newest `limit` sessions, newest first."""
        return self._select("ORDER BY created_at DESC LIMIT {p}", (limit,))

    def _select(self, where: str, params: tuple) -> list[SessionRecord]:
        columns = ", ".join(f"s.{c}" for c in SESSION_COLUMNS.split(", "))
        rows = self.db.fetchall(f"SELECT {columns}, p.plan FROM agent_sessions s JOIN session_plans p ON p.run_id = s.run_id {where}", params)
        return [
            SessionRecord(
                **dict(zip(("run_id", "project", "status", "workspace", "flow_run_id"), r[:5], strict=True)),
                metadata=SessionMetadata.model_validate(load_json(r[5])), created_at=load_ts(r[6]), updated_at=load_ts(r[7]),
                owner=r[8], lease_until=load_ts(r[9]) if r[9] is not None else None, plan=Plan.model_validate(load_json(r[10])),
            )  # fmt: skip
            for r in rows
        ]

    # --- retention ----------------------------------------------------------------------
    def delete(self, run_id: str) -> int:
        """Remove a run and everything recorded of it, in one transaction; its attempts' count."""

        def work(cur: Cursor) -> dict[str, int]:  # children first: they reference the session
            tables = ("llm_usage", "step_states", "step_results", "session_plans", "agent_sessions")
            return {t: self.db.execute(cur, f"DELETE FROM {t} WHERE run_id = {{p}}", (run_id,)).rowcount for t in tables}

        return self.db.atomic(work)["step_results"]
