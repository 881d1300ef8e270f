"""Start a run's flow from the CLI: its flow run is created first, tried again quickly when refused.

Prefect's server on SQLite creates a flow run in a transaction that reads before it writes, so
SQLite refuses it at once when another write lands in between (SQLITE_BUSY, no busy wait), and
the server answers 503 with no Retry-After. Runs started together meet each other's writes, and
Prefect's client waits 2, 4, then 8 s before trying again: of 16 runs started together, the last
began a minute late. A refusal like this is over in milliseconds. Calling a flow creates its flow
run inside Prefect's engine, where no wait can be shortened; here the flow run is created first,
by a client whose refusals carry a Retry-After of tenths of a second (an httpx response hook;
Prefect's client honours the header), and then the engine runs that flow run, as it runs one a
worker was given. Each wait is drawn at random below its bound, so runs refused together do not
all come back together; while the other runs' steps keep writing (16 runs at once on two cores),
a creation may be refused a dozen times, so the quick tries go on for up to QUICK_FOR_S. A server
still refusing after that gets Prefect's own waits.
"""

from __future__ import annotations

import random
import time
from typing import Any, cast

import httpx
from prefect import Flow
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import FlowRun
from prefect.context import SyncClientContext, TagsContext
from prefect.exceptions import PrefectHTTPStatusError
from prefect.flow_engine import run_flow
from prefect.states import Pending, State
from prefect.utilities.callables import get_call_parameters

QUICK_WAIT_S = 0.1  # the first wait's bound; doubled after each refusal, up to QUICK_WAIT_MAX_S
QUICK_WAIT_MAX_S = 0.5
QUICK_FOR_S = 60.0  # then Prefect's own waits (2, 4, 8, 16, 32 s)


def start_flow(flow: Flow, **parameters: Any) -> State:
    """Run `flow` with `parameters` as a new flow run: its final state (as `return_state=True`)."""
    parameters = get_call_parameters(flow.fn, (), parameters)  # with the defaults, as a call has them
    flow_run = create_flow_run(flow, parameters)
    return cast(State, run_flow(flow, flow_run=flow_run, parameters=parameters, return_type="state"))


def create_flow_run(flow: Flow, parameters: dict[str, Any]) -> FlowRun:
    """The new flow run, Pending, as the engine would create it; refusals tried again quickly."""
    refusals = 0

    def sooner(response: httpx.Response) -> None:
        nonlocal refusals
        if response.status_code == 503 and "Retry-After" not in response.headers:
            bound = min(QUICK_WAIT_S * 2**refusals, QUICK_WAIT_MAX_S)
            response.headers["Retry-After"] = f"{random.uniform(bound / 2, bound):.3f}"
            refusals += 1

    deadline = time.monotonic() + QUICK_FOR_S
    quick = get_client(sync_client=True, httpx_settings={"event_hooks": {"response": [sooner]}})
    with quick:
        while True:  # each call is tried again up to PREFECT_CLIENT_MAX_RETRIES times (5)
            try:
                return _create(quick, flow, parameters)
            except PrefectHTTPStatusError as exc:
                if exc.response.status_code != 503:
                    raise
                if time.monotonic() >= deadline:
                    break
                time.sleep(float(exc.response.headers.get("Retry-After", QUICK_WAIT_MAX_S)))  # its last refusal's wait
    # Still refused: what the engine would have done, Prefect's own waits.
    with SyncClientContext.get_or_create() as context:
        return _create(context.client, flow, parameters)


def _create(client: SyncPrefectClient, flow: Flow, parameters: dict[str, Any]) -> FlowRun:
    serialized = flow.serialize_parameters(parameters)
    return client.create_flow_run(flow, parameters=serialized, state=Pending(), tags=TagsContext.get().current_tags)
