"""Shared test fixtures: one Prefect server, one Docker engine check, one PostgreSQL server per session.

Services listen on loopback only and stop when the session ends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import postgres_bindir, throwaway_postgres

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# autodev's home for the session (its warm process lives there), never ~/.autodev; a short
# path, as the warm process's Unix socket path must be.
os.environ["AUTODEV_HOME"] = tempfile.mkdtemp(prefix="autodev-tests-")

IMAGE = os.environ.get("AUTODEV_IMAGE", "autodev-sandbox:latest")


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own SQLite state store and workspace root, never ~/.autodev."""
    monkeypatch.setenv("AUTODEV_DATABASE_URL", f"sqlite:///{tmp_path / 'autodev.db'}")
    monkeypatch.setenv("AUTODEV_WORKSPACE_ROOT", str(tmp_path / "workspaces"))
    monkeypatch.setenv("AUTODEV_CONFIG", str(tmp_path / "no-config.toml"))
    # A blocked run waits this long for a person; tests that decide raise it.
    monkeypatch.setenv("AUTODEV_DECISION_TIMEOUT_S", "1")
    # Without PREFECT_API_URL a run would start autodev's local server and keep it after the
    # test; tests/test_server.py tests that one, with its own home, and stops it.
    monkeypatch.setenv("AUTODEV_PREFECT_SERVER", "temporary")
    return tmp_path


@pytest.fixture(scope="session", autouse=True)
def autodev_home() -> Iterator[Path]:
    """The session's autodev home: at the end, the warm processes commands run with
    AUTODEV_WARM=on started there are stopped, and it is removed."""
    yield Path(os.environ["AUTODEV_HOME"])
    from autodev.cli.warm import stop_warm_processes

    stop_warm_processes()
    shutil.rmtree(os.environ["AUTODEV_HOME"], ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One temporary Prefect server for the whole session; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        url = PREFECT_API_URL.value()
        os.environ["PREFECT_API_URL"] = url  # for the CLI in subprocesses
        yield url
        os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture(scope="session")
def docker_engine():
    """The real Docker engine and the sandbox image; scripts/test.sh starts and builds them."""
    import docker.errors

    from autodev.blocks.sandbox.docker import docker_client

    client = docker_client()
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"sandbox image {IMAGE} is missing: run `autodev image build` (scripts/test.sh does)")
    yield client
    client.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server on 127.0.0.1, in a temporary directory, for this session only."""
    bindir = postgres_bindir()
    if bindir is None:
        pytest.fail("PostgreSQL server binaries are missing: apt-get install postgresql (scripts/test.sh does)")
    with throwaway_postgres(bindir, fsync=False) as url:
        yield url


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """An empty database on the session's PostgreSQL server."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:10]}"
    admin = postgres_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
def model_server():
    """A local OpenAI-compatible server with scripted replies (tests.helpers.FakeModelServer)."""
    from tests.helpers import FakeModelServer

    with FakeModelServer() as server:
        yield server


@pytest.fixture(scope="session")
def worker_image(docker_engine) -> str:
    """The Docker work pool's image (`autodev image build --worker`), built when it is missing
    or was built from other source than this checkout's."""
    from autodev.blocks.worker_image import build_worker_image, worker_image_is_current

    tag = "autodev-worker:latest"
    if not worker_image_is_current(tag):
        build_worker_image(tag, IMAGE)
    return tag


@pytest.fixture(scope="session")
def agent_image(docker_engine):
    """`agent_image("codex")`: the sandbox image with that agent CLI in it
    (`autodev image build --agent`), built from its registry when it is missing."""
    import docker.errors

    from autodev.blocks.agent_image import agent_image_tag, build_agent_image
    from autodev.core.agents import PRESETS

    def ensure(name: str) -> str:
        tag = agent_image_tag(IMAGE, PRESETS[name])
        try:
            docker_engine.images.get(tag)
        except docker.errors.ImageNotFound:
            build_agent_image(PRESETS[name], IMAGE, tag)
        return tag

    return ensure
