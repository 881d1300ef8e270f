"""An open state store: what it keeps, each part over the one database, and the one way a run
is written (`write`)."""

from __future__ import annotations

from autodev.blocks.store.attempts import Attempts
from autodev.blocks.store.database import Cursor, Database
from autodev.blocks.store.leases import LeaseLost, Leases
from autodev.blocks.store.metrics import Metrics
from autodev.blocks.store.sessions import Sessions
from autodev.core.report import RunReport, build_report
from autodev.core.session import Lease, RunWrite, SessionRecord


class Store:
    def __init__(self, db: Database):
        self.db = db
        self.sessions = Sessions(db)
        self.attempts = Attempts(db)
        self.leases = Leases(db)
        self.metrics = Metrics(db)

    def write(self, change: RunWrite, lease: Lease | None = None) -> None:
        """Everything `change` holds, in one transaction: the run's document, status and plan,
        its attempts, the step states they settle and its model calls, so no result is stored
        without the states it settles. With `lease`, refused (LeaseLost) when another process
        holds the run now; KeyError when there is no such run."""

        def work(cur: Cursor) -> None:
            owner = lease.owner if lease is not None else None
            if not self.sessions.update(cur, change.run_id, change.metadata, change.status, change.flow_run_id, owner):
                raise LeaseLost(change.run_id, self.sessions.owner(cur, change.run_id))  # KeyError: no such run
            if change.plan is not None:
                self.sessions.replace_plan(cur, change.run_id, change.plan)
            for attempt in change.attempts:
                self.attempts.insert(cur, attempt)
            self.attempts.set_states(cur, change.run_id, change.step_states)
            self.attempts.add_model_calls(cur, change.run_id, change.model_calls)

        self.db.atomic(work)

    def report(self, session: SessionRecord) -> RunReport:
        """The run's report as the store has it: its attempts, step states and model calls."""
        run_id = session.run_id
        return build_report(session, self.attempts.of(run_id), self.attempts.states(run_id), calls=self.attempts.model_calls(run_id))

    def close(self) -> None:
        self.db.close()
