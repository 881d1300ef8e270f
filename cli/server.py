"""`autodev server`: the local Prefect server autodev starts when PREFECT_API_URL is not set."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from autodev.settings import load_settings
from blocks.prefect_server import ManagedServer, ServerState

server_app = typer.Typer(help="The local Prefect server runs use when PREFECT_API_URL is not set.", no_args_is_help=True)
err = Console(stderr=True)
JSON = Annotated[bool, typer.Option("--json", help="Print one JSON object (the server's state).")]


def _server() -> ManagedServer:
    return ManagedServer(load_settings().server_home)


def _show(state: ServerState, as_json: bool, line: str) -> None:
    if as_json:
        print(json.dumps(state.model_dump(mode="json")))
    else:
        err.print(line, highlight=False, soft_wrap=True)


@server_app.command("start")
def start(as_json: JSON = False) -> None:
    """Start the server (nothing to do if it answers already); print where it is."""
    server = _server()
    url = server.ensure(say=None if as_json else lambda line: err.print(line, highlight=False, soft_wrap=True))
    state = server.state()
    _show(state, as_json, f"Prefect server at {url.removesuffix('/api')} (pid {state.pid}); "
          f"workers and other tools reach it with: export PREFECT_API_URL={url}")


@server_app.command("status")
def status(as_json: JSON = False) -> None:
    """Whether the server runs, where, and its log."""
    state = _server().state()
    line = (f"running at {state.url.removesuffix('/api')} (pid {state.pid}), log {state.log}" if state.running
            else f"not running: the next run without PREFECT_API_URL starts it (log {state.log})")
    _show(state, as_json, line)


@server_app.command("stop")
def stop(as_json: JSON = False) -> None:
    """Stop the server; the runs' records stay (the next run starts it again)."""
    state = _server().stop()
    _show(state, as_json, f"stopped the Prefect server (pid {state.pid})" if state.pid else "no Prefect server was running")
