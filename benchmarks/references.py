"""What the benchmarks measure autodev against: raw `docker exec` through the docker SDK, in
containers of the sandbox image, with no orchestrator around it (the floor under any)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager


def reference_container(client):
    """A container of the sandbox image for a reference to exec in (no network, as a sandbox)."""
    from autodev.core.settings import load_settings

    return client.containers.run(load_settings().image, ["sleep", "infinity"], detach=True, init=True, network_mode="none")


@contextmanager
def reference_containers(k: int) -> Iterator[list]:
    """K running containers of the sandbox image, each already exec'd into once; removed after."""
    from autodev.blocks.sandbox.docker import docker_client

    client = docker_client()
    containers = []
    try:
        for _ in range(k):
            containers.append(reference_container(client))
            containers[-1].exec_run(["true"])  # warm up
        yield containers
    finally:
        for container in containers:
            container.remove(force=True)
        client.close()


def exec_loop(container, n: int, command: str = "true") -> None:
    """n execs of `command` in the container, one after another."""
    for _ in range(n):
        result = container.exec_run(["sh", "-c", command])
        assert result.exit_code == 0, result.output


def execs_at_once(containers: list, n: int, command: str = "true") -> float:
    """Wall seconds for a thread per container to exec `command` n times in it."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(containers)) as pool:
        list(pool.map(lambda container: exec_loop(container, n, command), containers))
    return time.perf_counter() - started


def raw_docker_exec(n: int, command: str = "true") -> float:
    """Seconds per command with the docker SDK alone, in a container of the sandbox image."""
    with reference_containers(1) as containers:
        return execs_at_once(containers, n, command) / n
