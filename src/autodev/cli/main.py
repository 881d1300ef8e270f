"""The `autodev` command line.

Exit codes (the contract): 0 run succeeded; 1 run failed; 2 bad input or usage; 3 run blocked,
waiting for a human; 4 environment problem (no Docker engine, no image, database unreachable).
`--json` prints exactly one JSON object on stdout; logs go to stderr.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from autodev.cli import setup
from autodev.cli.gc import gc
from autodev.cli.server import server_app
from autodev.cli.setup import prefect_api, preflight, prepare_plan
from autodev.cli.show import load_run, show_report
from autodev.core.errors import AutodevError, BadInput, RunFailed
from autodev.core.models import RunReport, utcnow
from autodev.core.plan import load_plan
from autodev.core.session import SessionRecord
from autodev.flows.runtime import runtime

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
EXIT_FOR_STATUS = {"succeeded": 0, "failed": 1, "blocked": 3, "running": 1}


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

    # `kill` (SIGTERM) unwinds like Ctrl-C, so the sandbox container is removed and the run recorded.
    signal.signal(signal.SIGTERM, _interrupt)
    if not as_json:
        err.print(f"running {plan.project} ({len(plan.steps)} steps) in {workspace}", highlight=False, soft_wrap=True)
    with prefect_api(settings):
        state = start_flow(run_plan, plan=plan_parameter(plan, workspace), workspace=str(workspace))
        finish(state, as_json)


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
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (the run report).")] = False,
) -> None:
    """Decompose requirements into a plan, scaffold the workspace (or branch the repository), execute the plan."""
    from autodev.core.scaffold import check_new_workspace
    from autodev.flows.develop import is_repository, read_requirements

    settings = runtime().settings
    wanted = read_requirements(str(requirements))  # bad input fails here, before any flow run
    if replay is not None and not replay.is_file():
        raise BadInput(f"--replay {replay}: no such file")
    if workspace is not None and not is_repository(workspace):
        check_new_workspace(workspace)
    preflight(settings.image, settings.database_url)
    if workspace is None:
        workspace = settings.new_workspace(wanted.project)

    from autodev.flows.develop import develop
    from autodev.flows.start import start_flow

    signal.signal(signal.SIGTERM, _interrupt)
    if not as_json:
        if settings.llm_model:
            made_by = f"the model {settings.llm_model}"
        elif replay:
            made_by = f"stored model responses from {replay}"
        else:
            made_by = "no model: a plan with manual guidance, agent steps wait for a person"
        err.print(f"developing {wanted.project} from {requirements} in {workspace} ({made_by})", highlight=False, soft_wrap=True)
    with prefect_api(settings):
        state = start_flow(
            develop,
            requirements=str(requirements), workspace=str(workspace), template=template, confirm=not yes,
            replay=str(replay) if replay else None,
        )  # fmt: skip
        finish(state, as_json)


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
    if decomposition.source == "model":
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


def finish(state, as_json: bool) -> None:
    """Show the report of a finished (or blocked) flow run and exit with the contract's code."""
    outcome = state.result(raise_on_failure=False)
    if isinstance(outcome, RunFailed):
        run_id = outcome.report.run_id
    elif isinstance(outcome, RunReport):
        run_id = outcome.run_id
    elif isinstance(outcome, AutodevError):
        raise outcome
    else:
        raise AutodevError(f"the run crashed: {state.message}")
    report, session = load_run(run_id)
    show_report(report, as_json, session)
    raise typer.Exit(EXIT_FOR_STATUS[report.status])


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




@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    action: Annotated[str, typer.Option(help="retry | skip | abort")] = "retry",
    step: Annotated[str | None, typer.Option(help="The blocked step this is about (needed when several are blocked).")] = None,
    command: Annotated[str | None, typer.Option(help="With retry: run this command instead of the plan's.")] = None,
    note: Annotated[str, typer.Option(help="Why; kept with the run as an intervention.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (the run report).")] = False,
) -> None:
    """Decide on a blocked run, or continue one whose orchestrator died: the decision goes to the
    flow run waiting for it, or the run continues here from its first unfinished step."""
    if action not in ("retry", "skip", "abort"):
        raise BadInput(f"--action {action!r}: use retry, skip or abort")
    if command is not None and action != "retry":
        raise BadInput("--command goes with --action retry")
    report, session = load_run(run_id)
    check_resumable(report, session, step)
    decision = {"action": action, "command": command, "note": note, "step": step}
    with prefect_api(runtime().settings):
        decide_or_continue(report, session, decision, as_json)


def decide_or_continue(report: RunReport, session: SessionRecord, decision: dict, as_json: bool) -> None:
    """Hand the decision to the flow run waiting for it, or continue the run in this process."""
    run_id = report.run_id
    flow_run = None if report.orchestrator_gone else waiting_flow_run(session)
    if flow_run is not None:
        from prefect.flow_runs import resume_flow_run

        # The run's own process is waiting for exactly this input: hand it over and follow the run.
        resume_flow_run(flow_run.id, run_input=decision)
        report = follow(run_id, decisions_before=len(session.metadata.interventions))
        show_report(report, as_json, load_run(run_id)[1])
        raise typer.Exit(EXIT_FOR_STATUS[report.status])

    # Nobody waits for a decision (it timed out, or the orchestrator died): continue here.
    from autodev.core.session import Decision
    from autodev.flows.plan_flow import plan_parameter, run_plan
    from autodev.flows.start import start_flow

    settings = runtime().settings
    preflight(session.plan.image or settings.image, settings.database_url)
    prepare_plan(session.plan, settings)
    if report.orchestrator_gone:
        mark_flow_run_crashed(session.flow_run_id, f"its orchestrator died; the run is continued by `autodev resume {run_id}`")
    signal.signal(signal.SIGTERM, _interrupt)
    state = start_flow(
        run_plan,
        plan=plan_parameter(session.plan, Path(session.workspace)), workspace=session.workspace, continue_run=run_id, decision=Decision(**decision),
    )  # fmt: skip
    finish(state, as_json)


def check_resumable(report: RunReport, session: SessionRecord, step: str | None) -> None:
    """BadInput naming why the run cannot take a decision now."""
    run_id = report.run_id
    if session.status not in ("running", "blocked"):
        raise BadInput(f"run {run_id} is {session.status}, not blocked: nothing to decide")
    if session.status == "running" and not report.orchestrator_gone:
        raise BadInput(f"run {run_id} is running and its orchestrator is alive: nothing to decide (`autodev status {run_id}` follows it)")
    blocked = [b.step_id for b in report.blockers]
    if step is not None and step not in blocked:
        raise BadInput(f"--step {step}: not a blocked step of run {run_id} (blocked: {', '.join(blocked) or 'none'})")
    if step is None and len(blocked) > 1:
        listed = "; ".join(f"{b.step_id} ({b.kind}: {b.summary[:80]})" for b in report.blockers)
        raise BadInput(f"run {run_id} has {len(blocked)} blocked steps: {listed}. Name one with --step; one decision each")


def mark_flow_run_crashed(flow_run_id: str | None, message: str) -> None:
    """The flow run of an orchestrator that died still shows Running or Paused: mark it Crashed."""
    if not flow_run_id:
        return
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    with contextlib.suppress(Exception), get_client(sync_client=True) as client:  # a temporary server is gone
        flow_run = client.read_flow_run(flow_run_id)
        if flow_run.state is not None and not flow_run.state.is_final():
            client.set_flow_run_state(flow_run_id, Crashed(message=message), force=True)


def waiting_flow_run(session: SessionRecord):
    """The run's flow run if it is paused for a decision (or about to be), else None."""
    import time

    from prefect.client.orchestration import get_client

    if not session.flow_run_id or session.owner is None:
        return None  # nobody holds the run: nobody waits for its decision
    deadline = time.monotonic() + 15
    with get_client(sync_client=True) as client:
        while True:
            flow_run = client.read_flow_run(session.flow_run_id)
            if flow_run.state is not None and flow_run.state.is_paused():
                return flow_run
            # The loop records "waiting for a decision" a moment before Prefect shows Paused.
            about_to_pause = flow_run.state is not None and flow_run.state.is_running()
            if not (about_to_pause and session.metadata.phase.startswith("waiting for a decision")):
                return None
            if time.monotonic() > deadline:
                return None
            time.sleep(0.2)


def follow(run_id: str, decisions_before: int) -> RunReport:
    """Wait while the run's own process applies the decision and goes on; its report once it
    ends or blocks again. (Ctrl-C stops the waiting, not the run.)"""
    import time

    while True:
        report, session = load_run(run_id)
        if len(session.metadata.interventions) > decisions_before and session.status != "running":
            return report
        time.sleep(0.5)


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


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signum}")
