"""The state store block: where autodev keeps runs and step results; its URL picks the backend.

`StateStore(database_url=...).connect()` gives an open backend (`src/autodev/blocks/store_base.py`) with
its schema migrated: SQLite for `sqlite:///PATH` (the default, no server), PostgreSQL for
`postgresql://...`. An unreachable database is an EnvironmentProblem that says the fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from autodev.blocks.store_base import StoreBackend
from autodev.blocks.store_schema import SCHEMA_VERSION
from autodev.core.errors import BadInput, EnvironmentProblem
from autodev.core.settings import load_settings

__all__ = ["SCHEMA_VERSION", "StateStore", "StoreBackend", "redact_password"]


class StateStore(Block):
    """Where autodev keeps runs and step results; the URL picks the backend."""

    _block_type_name = "autodev state store"
    _description = "sqlite:///PATH (default) or postgresql://USER:PASSWORD@HOST:PORT/DB"

    database_url: SecretStr = Field(description="sqlite:///PATH or postgresql://...")

    def connect(self) -> StoreBackend:
        """An open backend with its schema migrated, or EnvironmentProblem with the fix."""
        url = self.database_url.get_secret_value()
        shown = redact_password(url)
        with _unreachable_is_environment_problem(shown):
            if url.startswith("sqlite:///"):
                from autodev.blocks.store_sqlite import SQLiteBackend  # each backend imports only its own driver

                backend: StoreBackend = SQLiteBackend(url.removeprefix("sqlite:///"))
            elif url.startswith(("postgresql://", "postgres://")):
                from autodev.blocks.store_postgres import PostgresBackend

                backend = PostgresBackend(url, load_settings().store_retry_s)
            else:
                raise BadInput(f"AUTODEV_DATABASE_URL {shown!r}: use sqlite:///PATH or postgresql://...")
            backend.migrate()
        return backend


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
