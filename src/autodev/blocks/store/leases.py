"""Who runs a session: its lease (`agent_sessions.owner`, `lease_until`). Only the process that
holds a run writes it; the holder renews its hold every heartbeat interval, and a process that
died stops renewing, so its hold runs out (`autodev/core/recovery.py`)."""

from __future__ import annotations

from datetime import timedelta

from autodev.blocks.store.database import Database
from autodev.core.errors import EnvironmentProblem
from autodev.core.models import utcnow
from autodev.core.session import Lease


class LeaseLost(EnvironmentProblem):
    """Another process holds the run now (it was resumed elsewhere): this one must stop writing it."""

    exit_code = 3

    def __init__(self, run_id: str, owner: str | None):
        super().__init__(
            f"run {run_id} is held by another process now (flow run {owner or 'none'}): this one stops",
            f"follow it with `autodev status {run_id}`",
        )


class Leases:
    def __init__(self, db: Database):
        self.db = db

    def take(self, run_id: str, lease: Lease, replacing: str | None = None) -> bool:
        """Hold the run for `lease.owner`, unless another process holds it and its hold has not
        run out; `replacing` names a holder known to be dead (its hold is taken over at once).
        True when the run is now held by the owner. Two processes asking at once: one wins."""
        now = utcnow()
        changed = self.db.write(
            "UPDATE agent_sessions SET owner = {p}, lease_until = {p} WHERE run_id = {p} "
            "AND (owner IS NULL OR owner = {p} OR owner = {p} OR lease_until IS NULL OR lease_until < {p})",
            (lease.owner, self.db.ts(now + timedelta(seconds=lease.seconds)), run_id, lease.owner, replacing, self.db.ts(now)),
        )
        return changed == 1

    def renew(self, run_id: str, lease: Lease) -> bool:
        """Extend the owner's hold (a process that is alive but not writing, e.g. while it waits
        for a person); False when the owner no longer holds the run."""
        until = self.db.ts(utcnow() + timedelta(seconds=lease.seconds))
        changed = self.db.write("UPDATE agent_sessions SET lease_until = {p} WHERE run_id = {p} AND owner = {p}", (until, run_id, lease.owner))
        return changed == 1

    def release(self, run_id: str, owner: str) -> None:
        """Nobody runs the session any more (it ended, or waits blocked for a later resume)."""
        self.db.write("UPDATE agent_sessions SET owner = NULL, lease_until = NULL WHERE run_id = {p} AND owner = {p}", (run_id, owner))
