"""A run's slot of its project's concurrency limit: Prefect's own control, so no more than N runs
of a project run commands at once, whatever starts them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


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
