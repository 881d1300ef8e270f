"""How a command that starts a flow run ends: a SIGTERM unwinds it like Ctrl-C, and it shows the
run's report and exits with the code the contract (src/autodev/cli/main.py) gives its status."""

from __future__ import annotations

import signal

import typer

from autodev.cli.show import load_run, show_report
from autodev.core.errors import AutodevError, RunFailed
from autodev.core.report import RunReport

EXIT_FOR_STATUS = {"succeeded": 0, "failed": 1, "blocked": 3, "running": 1}


def unwind_on_sigterm() -> None:
    """Make `kill` (SIGTERM) unwind like Ctrl-C, so the sandbox container is removed and the run recorded."""
    signal.signal(signal.SIGTERM, _interrupt)


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


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signum}")
