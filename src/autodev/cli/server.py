"""`autodev server`: the local Prefect server autodev starts when PREFECT_API_URL is not set, and
autodev's warm process (`autodev/cli/warm/`), which `stop` stops too."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from autodev.blocks.prefect_server import ManagedServer, ServerState
from autodev.cli.warm import running_warm_processes, socket_path, start_warm_process, stop_warm_processes
from autodev.flows.runtime import runtime

server_app = typer.Typer(help="The local Prefect server runs use when PREFECT_API_URL is not set.", no_args_is_help=True)
err = Console(stderr=True)
JSON = Annotated[bool, typer.Option("--json", help="Print one JSON object (the server's state).")]


def _server() -> ManagedServer:
    return ManagedServer(runtime().settings.server_home)


def _show(state: ServerState, as_json: bool, line: str, warm_pids: list[int]) -> None:
    if as_json:
        print(json.dumps({**state.model_dump(mode="json"), "warm_pids": warm_pids}))
    else:
        err.print(line, highlight=False, soft_wrap=True)


@server_app.command("start")
def start(as_json: JSON = False) -> None:
    """Start the server and the warm process (nothing to do if they answer already); print where the server is."""
    server = _server()
    start_warm_process(socket_path())
    url = server.ensure(say=None if as_json else lambda line: err.print(line, highlight=False, soft_wrap=True))
    state = server.state()
    _show(state, as_json, f"Prefect server at {url.removesuffix('/api')} (pid {state.pid}); "
          f"workers and other tools reach it with: export PREFECT_API_URL={url}", running_warm_processes())


@server_app.command("status")
def status(as_json: JSON = False) -> None:
    """Whether the server runs, where, and its log; and the warm process that runs commands."""
    state, warm_pids = _server().state(), running_warm_processes()
    line = (f"running at {(state.url or '').removesuffix('/api')} (pid {state.pid}), log {state.log}" if state.running
            else f"not running: the next run without PREFECT_API_URL starts it (log {state.log})")
    warm = f"warm process: pid {', '.join(map(str, warm_pids))}" if warm_pids else "warm process: none (the next command starts one, unless AUTODEV_WARM=off)"
    _show(state, as_json, f"{line}\n{warm}", warm_pids)


@server_app.command("stop")
def stop(as_json: JSON = False) -> None:
    """Stop the server and the warm process; the runs' records stay (the next run starts both again)."""
    state, warm_pids = _server().stop(), stop_warm_processes()
    line = f"stopped the Prefect server (pid {state.pid})" if state.pid else "no Prefect server was running"
    if warm_pids:
        line += f"; stopped the warm process (pid {', '.join(map(str, warm_pids))}): commands running in it go on"
    _show(state, as_json, line, warm_pids)
