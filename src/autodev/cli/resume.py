"""`autodev resume`: a person's decision on a blocked run, or the continuation of a run whose
orchestrator died. The decision goes to the flow run waiting for it; with nobody waiting, the run
continues in this process from its first unfinished step."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated
from uuid import UUID

import typer

from autodev.cli.outcome import EXIT_FOR_STATUS, finish, unwind_on_sigterm
from autodev.cli.setup import prefect_api, preflight, prepare_plan
from autodev.cli.show import load_run, show_report
from autodev.core.errors import BadInput
from autodev.core.report import RunReport
from autodev.core.session import SessionRecord
from autodev.flows.runtime import runtime


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
    unwind_on_sigterm()
    state = start_flow(
        run_plan,
        plan=plan_parameter(session.plan, Path(session.workspace)), workspace=session.workspace, continue_run=run_id, decision=Decision(**decision),
    )  # fmt: skip
    finish(state, as_json)


LIMIT_PAUSE = "waiting for a limit to reset"  # the phase of a run with only limit waits left, paused for a decision


def check_resumable(report: RunReport, session: SessionRecord, step: str | None) -> None:
    """BadInput naming why the run cannot take a decision now."""
    run_id = report.run_id
    if session.status not in ("running", "blocked"):
        raise BadInput(f"run {run_id} is {session.status}, not blocked: nothing to decide")
    waiting = [s.id for s in report.steps if s.status == "waiting"]
    if session.status == "running" and not report.orchestrator_gone and not session.metadata.phase.startswith(LIMIT_PAUSE):
        why = f"its steps {', '.join(waiting)} wait for a limit while others run (a decision can end the wait once only waits are left)" if waiting else "nothing to decide"
        raise BadInput(f"run {run_id} is running and its orchestrator is alive: {why} (`autodev status {run_id}` follows it)")
    blocked = [b.step_id for b in report.blockers] + waiting
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
        flow_run = client.read_flow_run(UUID(flow_run_id))
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
            flow_run = client.read_flow_run(UUID(session.flow_run_id))
            if flow_run.state is not None and flow_run.state.is_paused():
                return flow_run
            # The loop records "waiting for a decision" a moment before Prefect shows Paused.
            about_to_pause = flow_run.state is not None and flow_run.state.is_running()
            if not (about_to_pause and session.metadata.phase.startswith(("waiting for a decision", LIMIT_PAUSE))):
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
