"""What the store keeps of each step: every attempt (`step_results`), each step's state
(`step_states`), and the model calls a run made (`llm_usage`)."""

from __future__ import annotations

import json

from autodev.blocks.store.database import Cursor, Database, load_ts
from autodev.core.commands import AgentReport, CommandResult, StepAttempt
from autodev.core.limits import LimitHit
from autodev.core.models import StepStatus, utcnow
from autodev.core.session import LLMCall

ATTEMPT_COLUMNS = (
    "run_id, step_id, attempt, command, status, exit_code, exit_reason, "
    "started_at, finished_at, duration_s, output_bytes, output_tail, log_path, breaker_tripped, agent, limit_hit, refused"
)


class Attempts:
    def __init__(self, db: Database):
        self.db = db

    # --- written inside a run's write (`Store.write`) ------------------------------------
    def insert(self, cur: Cursor, attempt: StepAttempt) -> None:
        """Keep one attempt; once: a write tried again after its commit was acknowledged too
        late (the database restarted) finds it there and changes nothing."""
        r = attempt.result
        values = (
            attempt.run_id, attempt.step_id, attempt.attempt, attempt.command, r.status, r.exit_code, r.exit_reason,
            self.db.ts(r.started_at), self.db.ts(r.finished_at), r.duration_s, r.output_bytes, r.output_tail, r.log_path,
            int(attempt.breaker_tripped), r.agent.model_dump_json() if r.agent else None,
            r.limit.model_dump_json() if r.limit else None, json.dumps(r.refused) if r.refused else None,
        )  # fmt: skip
        self.db.execute(
            cur, f"INSERT INTO step_results ({ATTEMPT_COLUMNS}) VALUES ({', '.join(['{p}'] * 17)}) "
            "ON CONFLICT (run_id, step_id, attempt) DO NOTHING", values,
        )  # fmt: skip

    def set_states(self, cur: Cursor, run_id: str, states: dict[str, StepStatus]) -> None:
        now = self.db.ts(utcnow())
        for step_id, status in states.items():
            self.db.execute(
                cur,
                "INSERT INTO step_states (run_id, step_id, status, updated_at) VALUES ({p}, {p}, {p}, {p}) "
                "ON CONFLICT (run_id, step_id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at",
                (run_id, step_id, status, now),
            )

    def add_model_calls(self, cur: Cursor, run_id: str, calls: list[LLMCall]) -> None:
        for call in calls:
            self.db.execute(
                cur, "INSERT INTO llm_usage (run_id, purpose, model, tokens, cost_usd, ts) VALUES ({p}, {p}, {p}, {p}, {p}, {p})",
                (run_id, call.purpose, call.model, call.tokens, call.cost_usd, self.db.ts(utcnow())),
            )  # fmt: skip

    # --- read ---------------------------------------------------------------------------
    def of(self, run_id: str) -> list[StepAttempt]:
        """Every attempt of the run, in the order they were kept."""
        rows = self.db.fetchall(f"SELECT {ATTEMPT_COLUMNS} FROM step_results WHERE run_id = {{p}} ORDER BY id", (run_id,))
        return [
            StepAttempt(
                run_id=r[0], step_id=r[1], attempt=r[2], command=r[3], breaker_tripped=bool(r[13]),
                result=CommandResult(
                    status=r[4], exit_code=r[5], exit_reason=r[6], started_at=load_ts(r[7]), finished_at=load_ts(r[8]),
                    output_bytes=r[10], output_tail=r[11], log_path=r[12],
                    agent=AgentReport.model_validate_json(r[14]) if r[14] else None,
                    limit=LimitHit.model_validate_json(r[15]) if r[15] else None, refused=json.loads(r[16]) if r[16] else [],
                ),
            )  # fmt: skip
            for r in rows
        ]

    def states(self, run_id: str) -> dict[str, str]:
        return dict(self.db.fetchall("SELECT step_id, status FROM step_states WHERE run_id = {p}", (run_id,)))

    def model_calls(self, run_id: str) -> list[LLMCall]:
        """Every model call the run made, oldest first."""
        rows = self.db.fetchall("SELECT purpose, model, tokens, cost_usd FROM llm_usage WHERE run_id = {p} ORDER BY id", (run_id,))
        return [LLMCall(purpose=r[0], model=r[1], tokens=r[2], cost_usd=r[3]) for r in rows]
