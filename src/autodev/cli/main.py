"""The `autodev` command line.

Exit codes (the contract): 0 run succeeded; 1 run failed; 2 bad input or usage; 3 run blocked,
waiting for a human; 4 environment problem (no Docker engine, no image, database unreachable).
`--json` prints exactly one JSON object on stdout; logs go to stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from autodev.cli import setup
from autodev.cli.gc import gc
from autodev.cli.outcome import finish, unwind_on_sigterm
from autodev.cli.resume import resume
from autodev.cli.server import server_app
from autodev.cli.setup import choose_agent, choose_parallel, prefect_api, preflight, prepare_plan
from autodev.cli.show import load_run, show_report
from autodev.core.errors import AutodevError, BadInput
from autodev.core.models import utcnow
from autodev.core.plan import load_plan
from autodev.core.settings import Settings
from autodev.flows.runtime import runtime

if TYPE_CHECKING:  # the scaffold imports Jinja2: only `autodev run` needs it, when it checks its input
    from autodev.core.agents import AgentChoice
    from autodev.core.scaffold import Requirements

app = typer.Typer(
    help="autodev: run plans of commands as Prefect flows, every command in a Docker sandbox.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(setup.image_app, name="image")
metrics_app = typer.Typer(help="Prometheus metrics.", no_args_is_help=True)
app.add_typer(metrics_app, name="metrics")
app.add_typer(setup.automations_app, name="automations")
app.add_typer(server_app, name="server")
app.command()(setup.doctor)
app.command()(setup.deploy)
app.command()(gc)

out = Console()
err = Console(stderr=True)


def main() -> None:
    try:
        app()  # usage errors exit 2 and typer.Exit codes are honoured by click itself
    except AutodevError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)  # paths stay whole
        sys.exit(exc.exit_code)


@app.command("exec")
def exec_plan(
    plan_file: Annotated[Path, typer.Argument(help="Plan file (YAML or JSON).", metavar="PLAN.yaml")],
    workspace: Annotated[
        Path | None, typer.Option(help="Directory mounted at /workspace (default: a new one under ~/.autodev).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (the run report).")] = False,
) -> None:
    """Execute an explicit plan."""
    settings = runtime().settings
    plan = load_plan(plan_file)
    preflight(plan.image or settings.image, settings.database_url)
    plan = prepare_plan(plan, settings)
    if workspace is None:
        workspace = settings.new_workspace(plan.project)
    if workspace.exists() and not workspace.is_dir():
        raise BadInput(f"--workspace {workspace}: exists and is not a directory")

    from autodev.flows.plan_flow import plan_parameter, run_plan  # imports Prefect's engine: only when a run starts
    from autodev.flows.start import start_flow

    unwind_on_sigterm()
    if not as_json:
        err.print(f"running {plan.project} ({len(plan.steps)} steps) in {workspace}", highlight=False, soft_wrap=True)
    with prefect_api(settings):
        state = start_flow(run_plan, plan=plan_parameter(plan, workspace), workspace=str(workspace))
        finish(state, as_json)


AgentOption = Annotated[
    str | None,
    typer.Option(help="The coding-agent CLI for every agent step: codex, claude, aider (default: AUTODEV_AGENT, else builtin)."),
]
NetworkOption = Annotated[
    str | None, typer.Option(help="The network an agent CLI gets to reach its model: true, host or a Docker network.")
]

ParallelOption = Annotated[
    int | None,
    typer.Option(help="How many of a repository's tasks run at once, each on a branch of its own, merged once the tests pass (default: AUTODEV_PARALLEL, else up to 4 by this machine's cores and memory)."),
]


@app.command("run")
def run_requirements(
    requirements: Annotated[Path, typer.Argument(help="Requirements document (markdown).", metavar="REQUIREMENTS.md")],
    workspace: Annotated[
        Path | None,
        typer.Option(help="A git repository to work on (on a new branch), or a new directory to scaffold (default: one under ~/.autodev)."),
    ] = None,
    template: Annotated[str | None, typer.Option(help="Template to scaffold (default: the one the requirements name).")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Run a template's plan without asking for confirmation.")] = False,
    replay: Annotated[
        Path | None,
        typer.Option(help="With no model configured: answer model calls from this file of stored responses (offline)."),
    ] = None,
    agent: AgentOption = None,
    agent_args: Annotated[str | None, typer.Option(help="Extra arguments for that CLI (model, provider settings).")] = None,
    network: NetworkOption = None,
    parallel: ParallelOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (the run report).")] = False,
) -> None:
    """Decompose requirements into a plan, scaffold the workspace (or branch the repository), execute the plan."""
    settings = runtime().settings
    at_once = choose_parallel(settings, parallel)
    wanted = read_run_input(requirements, workspace, replay)
    preflight(settings.image, settings.database_url)
    chosen = choose_agent(settings, agent, agent_args, network)
    workspace = workspace or settings.new_workspace(wanted.project)

    from autodev.flows.develop import develop
    from autodev.flows.start import start_flow

    unwind_on_sigterm()
    if not as_json:
        made_by = plan_maker(settings, replay, chosen)
        err.print(f"developing {wanted.project} from {requirements} in {workspace} ({made_by})", highlight=False, soft_wrap=True)
    with prefect_api(settings):
        state = start_flow(
            develop,
            requirements=str(requirements), workspace=str(workspace), template=template, confirm=not yes,
            replay=str(replay) if replay else None, agent=chosen, parallel=at_once,
        )  # fmt: skip
        finish(state, as_json)


def read_run_input(requirements: Path, workspace: Path | None, replay: Path | None) -> Requirements:
    """The requirements of `autodev run`, its input checked first: bad input fails here, before any flow run."""
    from autodev.flows.develop import check_workspace, is_repository, read_requirements

    wanted = read_requirements(str(requirements))
    if replay is not None and not replay.is_file():
        raise BadInput(f"--replay {replay}: no such file")
    if workspace is not None and not is_repository(workspace):
        check_workspace(workspace)
    elif workspace is not None:
        from autodev.core.repository import tasks_of

        tasks_of(wanted)  # an order that cannot be kept (a cycle) is refused before anything runs
    return wanted


def plan_maker(settings: Settings, replay: Path | None, agent: AgentChoice | None) -> str:
    """Who will make the run's plan and do its agent steps, as the command announces it."""
    doer = f"; agent steps run {agent.name} in {agent.image}" if agent else ""
    if settings.llm_model:
        return f"the model {settings.llm_model}{doer}"
    if replay:
        return f"stored model responses from {replay}{doer}"
    if agent:
        return f"no model: one agent step per task{doer}"
    return "no model: a plan with manual guidance, agent steps wait for a person"


@app.command("plan")
def plan_requirements(
    requirements: Annotated[Path, typer.Argument(help="Requirements document (markdown).", metavar="REQUIREMENTS.md")],
    template: Annotated[str | None, typer.Option(help="Template to plan for (default: the one the requirements name).")] = None,
    replay: Annotated[
        Path | None, typer.Option(help="With no model configured: answer model calls from this file of stored responses.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (plan, source, guidance, usage).")] = False,
) -> None:
    """Decompose requirements into a plan and print it; nothing runs."""
    import logging

    import yaml

    from autodev.blocks.replay import REPLAY_MODEL
    from autodev.flows.develop import read_requirements
    from autodev.flows.runtime import runtime
    from autodev.tasks.decomposer import decompose_requirements

    wanted = read_requirements(str(requirements))
    logger = logging.getLogger("autodev.plan")
    logger.addHandler(logging.StreamHandler(sys.stderr))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    with runtime().model(None, str(replay) if replay else None, logger.info) as llm:
        decomposition = decompose_requirements(wanted, template, llm, logger)
    if as_json:
        print(json.dumps(decomposition.model_dump(mode="json", exclude_none=True)))
        return
    err.print(f"template {decomposition.template}: {decomposition.template_reason}", highlight=False, soft_wrap=True)
    if decomposition.source == "model" and llm is not None:  # only a model makes a plan of source "model"
        replayed = llm.model == REPLAY_MODEL
        err.print(f"plan made by the model {llm.model}" + (f" (stored responses from {replay})" if replayed else ""), highlight=False, soft_wrap=True)
    else:  # the decomposer's warning said why; the guidance is for the person who runs it
        err.print(decomposition.guidance, highlight=False, markup=False, soft_wrap=True)
    print(yaml.safe_dump(decomposition.plan.model_dump(mode="json", exclude_defaults=True), sort_keys=False, width=100))


@app.command()
def report(
    output: Annotated[Path, typer.Option(help="Where to write the report.")] = Path(
        "docs/orchestrator_ai_development_test_report.md"
    ),
    limit: Annotated[int, typer.Option(help="How many of the newest runs to include.")] = 200,
    project: Annotated[str | None, typer.Option(help="Only runs of this project.")] = None,
    include: Annotated[
        list[Path] | None, typer.Option(help="Markdown to add at the end (e.g. a soak's figures); repeatable.")
    ] = None,
) -> None:
    """Render the development test report from the runs recorded in the state store."""
    from autodev.core.evaluation import evaluate, render_report

    store = runtime().store()
    try:
        sessions = [s for s in store.sessions.recent(limit) if project is None or s.project == project]
        evaluations = [
            evaluate(s, store.attempts.of(s.run_id), store.attempts.states(s.run_id), store.attempts.model_calls(s.run_id))
            for s in sessions
            if s.status != "running"
        ]
    finally:
        store.close()
    if not evaluations:
        raise BadInput("no finished runs recorded yet" + (f" for project {project!r}" if project else ""))
    output.parent.mkdir(parents=True, exist_ok=True)
    extras = []
    for path in include or []:
        try:
            extras.append(path.read_text(encoding="utf-8").strip() + "\n")
        except OSError as exc:
            raise BadInput(f"--include {path}: {exc.strerror or exc}") from exc
    parts = [render_report(evaluations, utcnow()), *extras]
    output.write_text("\n\n".join(part.rstrip() for part in parts) + "\n", encoding="utf-8")
    err.print(f"wrote {output} from {len(evaluations)} recorded run(s)", highlight=False)


@app.command()
def status(
    run_id: Annotated[str | None, typer.Argument(help="Run id (default: the newest run).")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object: the run report, with the run's metadata.")
    ] = False,
) -> None:
    """Show a run's state from the state store."""
    report, session = load_run(run_id)
    show_report(report, as_json, session, with_metadata=True)


app.command()(resume)  # registered here so that `--help` lists it after `status`, as it always has


@metrics_app.command("serve")
def metrics_serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 9464,
) -> None:
    """Serve Prometheus metrics computed from the state store at http://HOST:PORT/metrics."""
    import threading

    from autodev.cli.exporter import serve

    store = runtime().store()
    try:
        serve(store, host, port)
    except OSError as exc:
        raise BadInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    err.print(f"serving metrics at http://{host}:{port}/metrics (Ctrl-C stops)", highlight=False)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        store.close()

