"""The store's figures for the metrics exporter (`autodev metrics serve`): attempts per status,
runs per status, running runs' last writes, blocked steps, model tokens and cost. Each query
reads what is new or small: the exporter asks at every scrape."""

from __future__ import annotations

from autodev.blocks.store.database import Database, load_ts
from autodev.core.models import LLMUsage
from autodev.core.session import AttemptTotals, RunBeat, StatusTotals


class Metrics:
    def __init__(self, db: Database):
        self.db = db

    def attempt_totals(self, after_id: int, buckets: tuple[float, ...]) -> AttemptTotals:
        """Per status, the attempts with id > after_id, summed; `last_id` is the highest id seen,
        so the next read takes only what is new."""
        cases = ", ".join(f"SUM(CASE WHEN duration_s <= {b!r} THEN 1 ELSE 0 END)" for b in buckets)
        rows = self.db.fetchall(
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
        return dict(self.db.fetchall("SELECT status, COUNT(*) FROM agent_sessions GROUP BY status"))

    def running_sessions(self) -> list[RunBeat]:
        """Every running session and its last write (every heartbeat writes)."""
        rows = self.db.fetchall("SELECT run_id, project, updated_at FROM agent_sessions WHERE status = {p}", ("running",))
        return [RunBeat(run_id=r[0], project=r[1], updated_at=load_ts(r[2])) for r in rows]

    def blocked_step_count(self) -> int:
        return self.db.fetchall("SELECT COUNT(*) FROM step_states WHERE status = {p}", ("blocked",))[0][0]

    def llm_totals(self) -> list[LLMUsage]:
        """Tokens and cost of every recorded call, summed per model."""
        rows = self.db.fetchall("SELECT model, SUM(tokens), SUM(cost_usd) FROM llm_usage GROUP BY model")
        return [LLMUsage(model=r[0], tokens=r[1] or 0, cost_usd=r[2] or 0.0) for r in rows]
