"""Environment checks for `autodev doctor` and the pre-flight of `autodev exec`, each with its fix."""

from __future__ import annotations

from dataclasses import dataclass

from autodev.errors import AutodevError
from autodev.settings import Settings


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def check_engine() -> Check:
    from blocks.docker_sandbox import docker_client

    try:
        client = docker_client(timeout=10)
    except AutodevError as exc:
        return Check("docker engine", False, exc.problem, exc.fix)
    version = client.version().get("Version", "?")
    client.close()
    return Check("docker engine", True, f"Docker Engine {version}")


def check_image(image: str) -> Check:
    import docker.errors

    from blocks.docker_sandbox import docker_client

    try:
        client = docker_client(timeout=10)
    except AutodevError as exc:
        return Check("sandbox image", False, exc.problem, exc.fix)
    try:
        found = client.images.get(image)
    except docker.errors.ImageNotFound:
        return Check("sandbox image", False, f"sandbox image {image!r} is missing", "autodev image build")
    finally:
        client.close()
    return Check("sandbox image", True, f"{image} ({found.short_id.removeprefix('sha256:')})")


def check_database(database_url: str) -> Check:
    from blocks.state_store import SCHEMA_VERSION, StateStore, redact_password

    try:
        store = StateStore(database_url=database_url).connect()
    except AutodevError as exc:
        return Check("state store", False, getattr(exc, "problem", str(exc)), getattr(exc, "fix", ""))
    store.close()
    return Check("state store", True, f"{redact_password(database_url)} (schema v{SCHEMA_VERSION})")


def check_prefect_api() -> Check:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return Check(
            "prefect api",
            False,
            "PREFECT_API_URL is not set: each run starts a temporary Prefect server (no UI afterwards)",
            "prefect server start --host 127.0.0.1 & export PREFECT_API_URL=http://127.0.0.1:4200/api",
            required=False,
        )
    with get_client(sync_client=True) as client:
        problem = client.api_healthcheck()
    if problem is not None:
        return Check("prefect api", False, f"{url} does not answer: {problem}", "start it: prefect server start")
    return Check("prefect api", True, url)


def run_checks(settings: Settings) -> list[Check]:
    return [check_engine(), check_image(settings.image), check_database(settings.database_url), check_prefect_api()]
