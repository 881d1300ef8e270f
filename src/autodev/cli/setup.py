"""Setting up where plans run: the sandbox images, the notification automations, `autodev doctor`,
and the pre-flight every run passes before its flow run exists (exit 4 with the fix)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from autodev.core.agents import AgentChoice
from autodev.core.errors import BadInput, EnvironmentProblem
from autodev.core.models import Plan
from autodev.core.plan import load_plan
from autodev.core.settings import Settings
from autodev.flows.runtime import runtime

out = Console()
err = Console(stderr=True)
image_app = typer.Typer(help="The sandbox image.", no_args_is_help=True)
automations_app = typer.Typer(help="Prefect automations that notify people.", no_args_is_help=True)


@image_app.command("build")
def image_build(
    tag: Annotated[str | None, typer.Option(help="Image tag (default: AUTODEV_IMAGE).")] = None,
    method: Annotated[
        str, typer.Option(help="auto: Dockerfile if a registry answers, else Debian packages; or dockerfile|debian.")
    ] = "auto",
    worker: Annotated[
        bool, typer.Option("--worker", help="Build the Docker work pool's image instead (default tag autodev-worker:latest).")
    ] = False,
    agent: Annotated[
        str | None, typer.Option(help="Build the sandbox image with this coding-agent CLI in it: codex, claude or aider.")
    ] = None,
) -> None:
    """Build the sandbox image (Python 3, pip, venv, git, pytest, non-root user); with --agent
    one with a coding-agent CLI in it (from its registry, default tag autodev-sandbox-AGENT);
    with --worker the image the Docker work pool runs flows in (the sandbox image plus autodev)."""
    say = lambda line: err.print(line, highlight=False)
    if agent is not None:
        from autodev.blocks.agent_image import agent_image_tag, build_agent_image
        from autodev.core.agents import PRESETS

        if agent not in PRESETS:
            raise BadInput(f"--agent {agent!r}: use {', '.join(PRESETS)}")
        base = runtime().settings.image
        build_agent_image(PRESETS[agent], base, tag or agent_image_tag(base, PRESETS[agent]), say)
        return
    if worker:
        from autodev.blocks.worker_image import build_worker_image

        build_worker_image(tag or "autodev-worker:latest", runtime().settings.image, say)
        return
    from autodev.blocks.sandbox_image import build_image

    if method not in ("auto", "dockerfile", "debian"):
        raise BadInput(f"--method {method!r}: use auto, dockerfile or debian")
    build_image(tag or runtime().settings.image, method, say=say)  # type: ignore[arg-type]


@automations_app.command("apply")
def automations_apply(
    webhook_url: Annotated[
        str | None, typer.Option(help="Where notifications are POSTed (default: AUTODEV_WEBHOOK_URL).")
    ] = None,
) -> None:
    """Create or update (idempotently) the notification automations on the Prefect server."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    from autodev.flows.automations import WEBHOOK_BLOCK, apply

    url = webhook_url or runtime().settings.webhook_url
    if not url:
        raise BadInput("no webhook URL: pass --webhook-url URL or set AUTODEV_WEBHOOK_URL")
    if not PREFECT_API_URL.value():
        err.print("[yellow]PREFECT_API_URL is not set: automations go to a temporary server and fire only while it runs[/]")
    ui = PREFECT_UI_URL.value() or "http://127.0.0.1:4200"
    for name in apply(url, ui):
        out.print(f"applied: {name}", highlight=False)
    out.print(f"webhook block: {WEBHOOK_BLOCK}", highlight=False)


def deploy(
    webhook_url: Annotated[
        str | None, typer.Option(help="Where notifications are POSTed (default: AUTODEV_WEBHOOK_URL); none: no automations.")
    ] = None,
) -> None:
    """Set up the Prefect server (PREFECT_API_URL) for autodev's deployments, idempotently: the
    work pools, the block types, every deployment in prefect.yaml, the automations."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    from autodev.cli.deploy import PROJECT
    from autodev.cli.deploy import deploy as deploy_all

    if not PREFECT_API_URL.value():
        raise EnvironmentProblem(
            "PREFECT_API_URL is not set: deployments need a Prefect server that stays up",
            "prefect server start --host 127.0.0.1 & export PREFECT_API_URL=http://127.0.0.1:4200/api",
        )
    url = webhook_url or runtime().settings.webhook_url
    deploy_all(PROJECT, url, PREFECT_UI_URL.value() or "http://127.0.0.1:4200", lambda line: out.print(line, highlight=False, soft_wrap=True))


def doctor(
    plan_file: Annotated[
        Path | None, typer.Option("--plan", help="Also check what this plan needs: its image, agents, network, secrets.")
    ] = None,
) -> None:
    """Check the Docker engine, the sandbox image, the database and the Prefect API (and a plan's needs)."""
    from autodev.cli.doctor import run_checks

    checks = run_checks(runtime().settings, load_plan(plan_file) if plan_file else None)
    table = Table(show_header=True, header_style="bold")
    for column in ("check", "state", "detail"):
        table.add_column(column)
    for check in checks:
        state = "[green]ok[/]" if check.ok else ("[red]missing[/]" if check.required else "[yellow]note[/]")
        detail = check.detail if check.ok else f"{check.detail}\nfix: {check.fix}"
        table.add_row(check.name, state, detail)
    out.print(table)
    if any(c.required and not c.ok for c in checks):
        raise typer.Exit(EnvironmentProblem.exit_code)


def prepare_plan(plan: Plan, settings: Settings) -> Plan:
    """The plan as a run gets it, once what it needs is there: its agents in its image, its
    network, its secrets (EnvironmentProblem with the fix, exit 4). Secret values written in a
    step's `env` move to this process's environment, so the flow run's parameters and the store
    get only their names."""
    from autodev.cli.doctor import check_agents, check_network, check_secrets
    from autodev.core.secrets import lift_env_secrets

    lifted = lift_env_secrets(plan)
    if lifted.values:
        err.print(f"[yellow]moved {', '.join(lifted.values)} out of the plan's env: secrets are passed, never stored[/]")
        os.environ.update(lifted.values)
    checks = [*check_agents(plan.image or settings.image, plan), check_secrets(lifted.plan)]
    if plan.network is not False:
        checks.append(check_network(plan.network))
    for check in checks:
        if check is not None and not check.ok:
            raise EnvironmentProblem(check.detail, check.fix)
    return lifted.plan


def choose_agent(settings: Settings, name: str | None, args: str | None, network: str | None) -> AgentChoice | None:
    """The coding-agent CLI for every agent step of `autodev run` (`--agent`, else the
    settings'); None: the built-in agent. BadInput for a name with no preset (exit 2),
    EnvironmentProblem (exit 4) when no sandbox image holds the CLI or the network cannot be had."""
    from autodev.cli.doctor import check_network, image_with_agent
    from autodev.core.agents import PRESETS
    from autodev.core.egress import network_mode

    name = name or settings.agent
    if name is None or name == "builtin":
        return None
    if name not in PRESETS:
        raise BadInput(f"--agent {name!r}: no such agent; choose {', '.join(PRESETS)}, or builtin (autodev's own agent)")
    preset = PRESETS[name]
    try:
        wanted = network_mode(network if network is not None else settings.agent_network)
    except ValueError as exc:
        raise BadInput(f"--network {exc}") from exc
    if wanted is not False and not (checked := check_network(wanted)).ok:
        raise EnvironmentProblem(checked.detail, checked.fix)
    image = image_with_agent(settings.image, preset)
    return AgentChoice(name=preset.name, args=args or settings.agent_args, image=image, network=wanted)


def choose_parallel(settings: Settings, parallel: int | None) -> int:
    """How many tasks `autodev run` works on at once (`--parallel`, else the settings'); BadInput (exit 2) outside 1-32."""
    if parallel is not None and not 1 <= parallel <= 32:
        raise BadInput(f"--parallel {parallel}: give how many tasks may run at once, from 1 to 32")
    return parallel or settings.tasks_at_once()


def preflight(image: str, database_url: str) -> None:
    """Fail fast, before any flow run exists, when the environment cannot run a plan (exit 4)."""
    from autodev.cli.doctor import check_database, check_image

    for check in (check_image(image), check_database(database_url)):
        if not check.ok:
            raise EnvironmentProblem(check.detail, check.fix)


@contextlib.contextmanager
def prefect_api(settings: Settings) -> Iterator[None]:
    """Where a run's flow goes: PREFECT_API_URL when it is set; else autodev's local Prefect
    server (started on the first run, kept for the next ones: `autodev server stop`), unless
    AUTODEV_PREFECT_SERVER=temporary asks for a temporary server per run, Prefect's default."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    from autodev.blocks.prefect_server import ManagedServer, temporary_server

    with contextlib.ExitStack() as stack:
        if settings.prefect_server == "temporary":
            url = stack.enter_context(temporary_server())
        else:
            url = ManagedServer(settings.server_home).ensure(say=lambda line: err.print(line, highlight=False, soft_wrap=True))
        os.environ["PREFECT_API_URL"] = url  # for what this process starts (a worker, a shell step's CLI)
        stack.enter_context(temporary_settings(updates={PREFECT_API_URL: url}))
        yield
