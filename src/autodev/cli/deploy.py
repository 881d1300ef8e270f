"""`autodev deploy`: everything a Prefect server needs to run autodev's deployments, in one
idempotent command: the work pools `prefect.yaml` names, autodev's block types, every
deployment in `prefect.yaml` (through Prefect's own `prefect deploy --all`), and the
notification automations. `autodev doctor` reports what of it is missing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from autodev.core.errors import EnvironmentProblem

PROJECT = Path(__file__).resolve().parents[3]  # the repository: prefect.yaml and the flows' sources
POOL_TYPES = {"autodev-process": "process", "autodev-docker": "docker"}


def deployments_in(project: Path) -> list[dict]:
    return yaml.safe_load((project / "prefect.yaml").read_text())["deployments"]


def work_pools_in(project: Path) -> dict[str, str]:
    """The work pools prefect.yaml's deployments name, with their types."""
    names = dict.fromkeys(d["work_pool"]["name"] for d in deployments_in(project))
    unknown = [n for n in names if n not in POOL_TYPES]
    if unknown:
        raise EnvironmentProblem(
            f"prefect.yaml names work pool(s) {', '.join(unknown)} whose type autodev does not know",
            f"create them first: prefect work-pool create {unknown[0]} --type process",
        )
    return {name: POOL_TYPES[name] for name in names}


def deploy(project: Path, webhook_url: str | None, ui_url: str, say: Callable[[str], None]) -> None:
    """Create what is missing and update the rest; say what was done, a line per thing."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        for name, kind in work_pools_in(project).items():
            try:
                client.create_work_pool(WorkPoolCreate(name=name, type=kind))
                say(f"work pool {name} ({kind}): created")
            except ObjectAlreadyExists:
                say(f"work pool {name} ({kind}): exists")
    for block in _block_types():
        block.register_type_and_schema()
        say(f"block type {block.get_block_type_name()!r}: registered")
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"], cwd=project, capture_output=True, text=True
    )
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        raise EnvironmentProblem(f"`prefect deploy --all` failed: {tail}", "read its message; `autodev doctor` checks the server")
    for d in deployments_in(project):
        say(f"deployment {d['name']}: deployed ({d['entrypoint']}, work pool {d['work_pool']['name']})")
    if not webhook_url:
        say("automations: not applied (no --webhook-url and no AUTODEV_WEBHOOK_URL): runs are not notified")
        return
    from autodev.flows.automations import apply

    for name in apply(webhook_url, ui_url):
        say(f"automation {name!r}: applied")


def missing(project: Path) -> list[str]:
    """What of the setup the Prefect server lacks (empty when `autodev deploy` has run)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        pools = {p.name for p in client.read_work_pools()}
        deployed = {d.name for d in client.read_deployments()}
        automations = {a.name for a in client.read_automations()}
    gaps = [f"work pool {n}" for n in work_pools_in(project) if n not in pools]
    gaps += [f"deployment {d['name']}" for d in deployments_in(project) if d["name"] not in deployed]
    if not any(name.startswith("autodev") for name in automations):
        gaps.append("the notification automations")
    return gaps


def _block_types() -> list:
    from autodev.blocks.llm import LLM
    from autodev.blocks.sandbox.docker import DockerSandbox
    from autodev.blocks.store import StateStore

    return [DockerSandbox, StateStore, LLM]
