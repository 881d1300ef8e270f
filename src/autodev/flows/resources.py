"""What a run works with, loaded once at its start: the state store, the sandbox settings and the
model. Each comes from a Prefect block saved under a name (created or edited in the UI), or from
the AUTODEV_* settings when no block is named."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prefect import get_run_logger

from autodev.blocks.docker_sandbox import DockerSandbox
from autodev.blocks.llm import LLM
from autodev.blocks.replay import ReplayServer, load_cassette
from autodev.blocks.state_store import StateStore
from autodev.core.models import Plan
from autodev.core.settings import Settings, load_settings


def state_store_config(block_name: str | None) -> StateStore:
    """The state store block saved under `block_name`, or the one AUTODEV_DATABASE_URL describes."""
    if block_name:
        return StateStore.load(block_name)
    return StateStore(database_url=load_settings().database_url)


def sandbox_config(block_name: str | None, plan: Plan, settings: Settings) -> DockerSandbox:
    """The sandbox block saved under `block_name`, or the AUTODEV_* settings; what the plan asks
    for (image, network) wins over either."""
    if block_name:
        config = DockerSandbox.load(block_name)
    else:
        config = DockerSandbox(image=settings.image, memory=settings.sandbox_memory, pids_limit=settings.sandbox_pids)
    return config.model_copy(update={"image": plan.image or config.image, "network": plan.network or config.network})


def llm_config(block_name: str | None) -> LLM | None:
    """The LLM block saved under `block_name`, or the model AUTODEV_LLM_MODEL names, or none."""
    if block_name:
        return LLM.load(block_name)
    settings = load_settings()
    if not settings.llm_model:
        return None
    return LLM(
        model=settings.llm_model,
        api_base=settings.llm_api_base,
        api_key=settings.llm_api_key,
        timeout_s=settings.llm_timeout_s,
    )


@contextmanager
def model_for(llm_block: str | None, replay: str | None, say: Callable[[str], None] | None = None) -> Iterator[LLM | None]:
    """The run's model: the LLM block or AUTODEV_LLM_MODEL; when neither is configured and
    `replay` names a file, its stored responses replayed by a local server (offline runs).
    `say` tells which (default: the flow run's log)."""
    configured = llm_config(llm_block)
    if configured is not None or not replay:
        yield configured
        return
    with ReplayServer(load_cassette(replay)) as server:
        (say or get_run_logger().info)(f"model answers are replayed from {replay} by a local server, not asked of a model")
        yield LLM.replaying(server.api_base, load_settings().llm_timeout_s)


def project_limit_name(project: str) -> str:
    return f"autodev-project-{project}"


@contextmanager
def project_slot(project: str, say: Callable[[str], None], beat: Callable[[str], None], every_s: float) -> Iterator[None]:
    """A slot of the project's global concurrency limit, held while the run has its sandbox:
    Prefect's own control (`prefect gcl create autodev-project-PROJECT --limit N`), so no more
    than N runs of the project run commands at once, whatever starts them. Without that limit
    on the server there is nothing to wait for. While it waits, `beat` is called every
    `every_s` with what the run is doing, so its heartbeat stays fresh."""
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectNotFound

    name = project_limit_name(project)
    try:
        with get_client(sync_client=True) as client:
            limit = client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        limit = None
    if limit is None:
        yield
        return
    waiting = f"waiting for a slot of the concurrency limit {name}"
    if limit.active and limit.active_slots >= limit.limit:
        say(f"{waiting}: {limit.active_slots} of {limit.limit} in use")
    # Acquiring blocks (a timed-out try would log an error each time): a thread beats meanwhile.
    acquired = threading.Event()

    def keep_beating() -> None:
        while not acquired.wait(every_s):
            beat(waiting)

    beater = threading.Thread(target=keep_beating, name="autodev-slot-wait", daemon=True)
    beater.start()
    try:
        with concurrency(name, occupy=1, strict=True):
            acquired.set()
            beater.join()
            yield
    finally:
        acquired.set()
