"""The state store: where autodev keeps runs and step results; its URL picks the backend.

`StateStore(database_url=...).connect()` gives an open `Store` (`store.py`) with its schema
migrated: SQLite for `sqlite:///PATH` (the default, no server), PostgreSQL for `postgresql://...`.
An unreachable database is an EnvironmentProblem that says the fix. What the store keeps is
split by kind: `sessions`, `attempts`, `leases`, `metrics`, over one SQL dialect layer
(`database.py`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from autodev.blocks.store.database import Database
from autodev.blocks.store.leases import LeaseLost
from autodev.blocks.store.schema import SCHEMA_VERSION
from autodev.blocks.store.store import Store
from autodev.core.errors import BadInput, EnvironmentProblem

__all__ = ["SCHEMA_VERSION", "LeaseLost", "StateStore", "Store", "redact_password"]


class StateStore(Block):
    """Where autodev keeps runs and step results; the URL picks the backend."""

    _block_type_name = "autodev state store"
    _description = "sqlite:///PATH (default) or postgresql://USER:PASSWORD@HOST:PORT/DB"

    database_url: SecretStr = Field(description="sqlite:///PATH or postgresql://...")

    def connect(self, retry_s: float = 60) -> Store:
        """An open store with its schema migrated, or EnvironmentProblem with the fix; writes to a
        PostgreSQL server that went away are tried again for `retry_s` (AUTODEV_STORE_RETRY_S)."""
        url = self.database_url.get_secret_value()
        shown = redact_password(url)
        with _unreachable_is_environment_problem(shown):
            if url.startswith("sqlite:///"):
                from autodev.blocks.store.sqlite import SQLiteDatabase  # each backend imports only its own driver

                db: Database = SQLiteDatabase(url.removeprefix("sqlite:///"))
            elif url.startswith(("postgresql://", "postgres://")):
                from autodev.blocks.store.postgres import PostgresDatabase

                db = PostgresDatabase(url, retry_s)
            else:
                raise BadInput(f"AUTODEV_DATABASE_URL {shown!r}: use sqlite:///PATH or postgresql://...")
            db.migrate()
        return Store(db)


@contextmanager
def _unreachable_is_environment_problem(url_for_humans: str) -> Iterator[None]:
    try:
        yield
    except (EnvironmentProblem, BadInput):
        raise
    except Exception as exc:  # each driver has its own error classes
        raise EnvironmentProblem(
            f"state store {url_for_humans} is unreachable: {exc.__class__.__name__}: {str(exc).strip()[:300]}",
            "start the database or set AUTODEV_DATABASE_URL to a reachable one "
            "(the default sqlite:///~/.autodev/autodev.db needs no server)",
        ) from exc


def redact_password(url: str) -> str:
    """The URL with its password (if any) replaced by ***, for messages."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url
