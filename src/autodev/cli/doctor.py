"""Environment checks for `autodev doctor` and the pre-flight of `autodev exec`, each with its fix."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from autodev.core.egress import Egress, NetworkMode
from autodev.core.errors import AutodevError, EnvironmentProblem
from autodev.core.models import Plan
from autodev.core.settings import Settings

if TYPE_CHECKING:
    from autodev.core.agents import AgentPreset


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def check_engine() -> Check:
    from autodev.blocks.sandbox.docker import docker_client

    try:
        client = docker_client(timeout=10)
    except EnvironmentProblem as exc:
        return Check("docker engine", False, exc.problem, exc.fix)
    version = client.version().get("Version", "?")
    client.close()
    return Check("docker engine", True, f"Docker Engine {version}")


def check_image(image: str) -> Check:
    import docker.errors

    from autodev.blocks.sandbox.docker import docker_client

    try:
        client = docker_client(timeout=10)
    except EnvironmentProblem as exc:
        return Check("sandbox image", False, exc.problem, exc.fix)
    try:
        found = client.images.get(image)
    except docker.errors.ImageNotFound:
        return Check("sandbox image", False, f"sandbox image {image!r} is missing", "autodev image build")
    finally:
        client.close()
    return Check("sandbox image", True, f"{image} ({found.short_id.removeprefix('sha256:')})")


def check_database(database_url: str) -> Check:
    from autodev.blocks.store import SCHEMA_VERSION, StateStore, redact_password

    try:
        store = StateStore(database_url=database_url).connect()
    except AutodevError as exc:
        return Check("state store", False, getattr(exc, "problem", str(exc)), getattr(exc, "fix", ""))
    store.close()
    return Check("state store", True, f"{redact_password(database_url)} (schema v{SCHEMA_VERSION})")


def check_prefect_api(settings: Settings) -> Check:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url and settings.prefect_server == "temporary":
        return Check(
            "prefect api",
            False,
            "PREFECT_API_URL is not set and AUTODEV_PREFECT_SERVER=temporary: each run starts a temporary Prefect server (no UI afterwards)",
            "unset AUTODEV_PREFECT_SERVER (runs share a local server), or export PREFECT_API_URL=http://HOST:4200/api",
            required=False,
        )
    if not url:
        from autodev.blocks.prefect_server import ManagedServer

        state = ManagedServer(settings.server_home).state()
        if not state.running:
            return Check("prefect api", True, f"no PREFECT_API_URL: the next run starts a local Prefect server (log {state.log})")
        return Check("prefect api", True, f"no PREFECT_API_URL: autodev's local server at {state.url} (pid {state.pid})")
    with get_client(sync_client=True) as client:
        problem = client.api_healthcheck()
    if problem is not None:
        return Check("prefect api", False, f"{url} does not answer: {problem}", "start it: prefect server start")
    return Check("prefect api", True, url)


def check_agents(image: str, plan: Plan) -> list[Check]:
    """Each agent CLI the plan's steps name is in the image (its label, else its binary on PATH)."""
    from autodev.blocks.agent_image import agent_image_tag, agents_in
    from autodev.blocks.sandbox.docker import docker_client
    from autodev.core.agents import presets_in

    presets = presets_in(plan)
    if not presets:
        return []
    try:
        client = docker_client(timeout=10)
        labelled = agents_in(client, image)
        checks = []
        for preset in presets:
            found = preset.name in labelled or has_binary(client, image, preset.binary)
            checks.append(Check(
                f"agent {preset.name}", found,
                f"{image} has {preset.binary}" if found else f"the image {image!r} has no {preset.binary} for `agent: {preset.name}`",
                f"autodev image build --agent {preset.name}, then set `image: {agent_image_tag(image, preset)}` in the plan",
            ))
        client.close()
        return checks
    except (AutodevError, LookupError) as exc:  # no engine, no image: check_engine/check_image say so
        return [Check("agents", False, str(exc), "autodev image build")]


def has_binary(client, image: str, binary: str) -> bool:
    try:
        client.containers.run(image, ["/bin/sh", "-c", f"command -v {binary}"], remove=True, network_mode="none")
        return True
    except Exception:  # the docker SDK raises ContainerError for a non-zero exit, ImageNotFound, ...
        return False


def image_with_agent(base: str, preset: AgentPreset) -> str:
    """The sandbox image for agent steps running `preset`: `base` if it holds the CLI, else the
    image `autodev image build --agent` makes from it; EnvironmentProblem (exit 4) with that
    build command when neither does."""
    import docker.errors

    from autodev.blocks.agent_image import agent_image_tag, agents_in
    from autodev.blocks.sandbox.docker import docker_client

    client = docker_client(timeout=10)
    try:
        for image in (base, agent_image_tag(base, preset)):
            with contextlib.suppress(docker.errors.ImageNotFound):
                if preset.name in agents_in(client, image) or (image == base and has_binary(client, image, preset.binary)):
                    return image
    finally:
        client.close()
    raise EnvironmentProblem(
        f"--agent {preset.name}: neither {base!r} nor {agent_image_tag(base, preset)!r} has the {preset.binary} CLI",
        f"autodev image build --agent {preset.name}",
    )


def check_network(network: NetworkMode | Egress) -> Check:
    from autodev.blocks.sandbox.docker import docker_client, network_mode_for

    if network is False:
        return Check("sandbox network", True, "none (the plan asks for no network)")
    if isinstance(network, Egress):  # no network of its own: a proxy on this side lets the hosts through
        hosts = ", ".join(network.allow) or "the hosts of its agents' models"
        return Check("sandbox network", True, f"only {hosts}, through autodev's proxy")
    try:
        client = docker_client(timeout=10)
        mode = network_mode_for(client, network)
        client.close()
    except EnvironmentProblem as exc:
        return Check("sandbox network", False, exc.problem, exc.fix)
    return Check("sandbox network", True, f"network {mode!r}")


def check_secrets(plan: Plan) -> Check | None:
    """The plan's secrets are set where autodev runs (a Prefect Secret block counts when the
    Prefect API is configured: the run asks it)."""
    from prefect.settings import PREFECT_API_URL

    from autodev.blocks.secrets import resolve_secrets
    from autodev.core.secrets import lift_env_secrets, secret_names

    lifted = lift_env_secrets(plan)
    names = secret_names(lifted.plan)
    if not names.required:
        return None
    try:
        resolve_secrets(names, {**os.environ, **lifted.values}, blocks=bool(PREFECT_API_URL.value()))
    except EnvironmentProblem as exc:
        return Check("secrets", False, exc.problem, exc.fix)
    return Check("secrets", True, f"{', '.join(names.required)} set (values not shown)")


def check_deployed() -> Check | None:
    """What `autodev deploy` would add to the Prefect server (a note: runs work without it)."""
    from prefect.settings import PREFECT_API_URL

    from autodev.cli.deploy import PROJECT, missing

    if not PREFECT_API_URL.value():
        return None
    try:
        gaps = missing(PROJECT)
    except Exception as exc:  # an unreachable server: check_prefect_api says so
        return Check("deployments", False, f"cannot read the server's setup: {exc}", "autodev doctor", required=False)
    if gaps:
        return Check("deployments", False, f"not set up: {', '.join(gaps)}", "autodev deploy [--webhook-url URL]", required=False)
    return Check("deployments", True, "work pools, deployments and automations are set up")


def run_checks(settings: Settings, plan: Plan | None = None) -> list[Check]:
    checks = [check_engine(), check_image(settings.image), check_database(settings.database_url), check_prefect_api(settings)]
    checks += [c for c in (check_deployed(),) if c is not None]
    if plan is not None:
        image = plan.image or settings.image
        checks[1] = check_image(image)
        checks += [*check_agents(image, plan), check_network(plan.network)]
        checks += [c for c in (check_secrets(plan),) if c is not None]
    return checks
