"""Docker backend of the sandbox: one long-lived container per run, each command a `docker exec`
(`session.py`).

`docker exec` into a running container costs ~40 ms against ~270 ms for a fresh `docker run`,
and keeps the run's files and installed packages between steps. The container runs as the
workspace's owner (never root), with no network unless the plan asks, all capabilities dropped,
no-new-privileges, pids and memory limits, and `--init` to reap what killed commands leave.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import docker
import docker.errors
from prefect.blocks.core import Block
from pydantic import Field

from autodev.blocks.sandbox.egress import EgressGate
from autodev.blocks.sandbox.layout import status_dir
from autodev.blocks.sandbox.session import CONTAINER_WORKSPACE, ENGINE_ERRORS, DockerSandboxSession
from autodev.core.egress import EgressRules
from autodev.core.errors import EnvironmentProblem
from autodev.core.settings import DEFAULT_IMAGE

SANDBOX_UID = 1000  # the image's `autodev` user
SANDBOX_HOME = "/home/autodev"


def docker_client(timeout: int = 30) -> docker.DockerClient:
    """A client for a reachable engine, or EnvironmentProblem with the fix."""
    try:
        client = docker.from_env(timeout=timeout)
        if client.api.base_url.startswith("http+docker://"):
            # A local socket, which no proxy or .netrc applies to: requests would look both up
            # in the environment for every call (a few per step).
            client.api.trust_env = False
        client.ping()
        return client
    except ENGINE_ERRORS as exc:
        raise EnvironmentProblem(
            f"no Docker engine is reachable ({exc.__class__.__name__}: {exc})",
            "start one (`dockerd &`, or `bash scripts/quickstart.sh` installs and starts it), "
            "or point DOCKER_HOST at one",
        ) from exc


class DockerSandbox(Block):
    """Settings of the Docker sandbox; `open()` starts one for a run."""

    _block_type_name = "autodev Docker sandbox"
    _description = "Where autodev runs a plan's commands: image, network and resource limits."

    image: str = Field("autodev-sandbox:latest", description="Image to run commands in; it needs /bin/sh and grep.")
    network: bool | str = Field(
        False, description="false: no network; true: Docker's default bridge; host; or the name of a Docker network."
    )
    memory: str = Field("4g", description="Memory limit, docker syntax (512m, 4g).")
    pids_limit: int = Field(1024, description="Maximum number of processes in the container.")
    egress: EgressRules | None = Field(
        None, description="An allow-list: no network of its own, only these hosts through autodev's proxy (`network` is then ignored)."
    )

    def open(self, workspace: Path, run_id: str, flow_run_id: str | None = None) -> DockerSandboxSession:

        client = docker_client()
        try:
            client.images.get(self.image)
        except docker.errors.ImageNotFound as exc:
            raise EnvironmentProblem(
                f"sandbox image {self.image!r} is missing", "build it with `autodev image build`"
            ) from exc
        network_mode = "none" if self.egress else network_mode_for(client, self.network)
        user = _sandbox_user(workspace)
        _status_dir(workspace, run_id, user)
        gate = EgressGate(self.egress, run_id, user, flow_run_id) if self.egress else None
        try:
            container = self._container(client, workspace, run_id, flow_run_id, network_mode, user)
        except BaseException:
            if gate is not None:
                gate.close()
            raise
        session = DockerSandboxSession(client, container, workspace.resolve(), run_id, self.memory, gate)
        if gate is not None:
            try:
                gate.attach(client, container, self._relay_image(client))
            except BaseException:
                session.close()
                raise
        return session

    def _container(self, client: docker.DockerClient, workspace: Path, run_id: str, flow_run_id: str | None, network_mode: str, user: str):
        """The run's container, started: it runs `sleep infinity`, and each command is an exec."""
        return client.containers.run(
            self.image,
            command=["sleep", "infinity"],
            name=f"autodev-{run_id}-{uuid.uuid4().hex[:6]}",
            detach=True,
            init=True,  # reaps the zombies that killed process groups leave behind
            user=user,
            # One HOME for every run and uid, a resumed run's too: a config baked into the image
            # (an agent CLI's) is found; autodev's images make it writable for any uid.
            environment={"HOME": SANDBOX_HOME},
            working_dir=CONTAINER_WORKSPACE,
            volumes={str(workspace.resolve()): {"bind": CONTAINER_WORKSPACE, "mode": "rw"}, **git_mounts(workspace)},
            network_mode=network_mode,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=self.pids_limit,
            mem_limit=self.memory,
            labels={"autodev.run_id": run_id, "autodev.flow_run_id": flow_run_id or run_id},
        )

    def _relay_image(self, client: docker.DockerClient) -> str:
        """autodev's own sandbox image (python3 in it) for the allow-list's relay, else the run's."""
        try:
            client.images.get(DEFAULT_IMAGE)
            return DEFAULT_IMAGE
        except docker.errors.ImageNotFound:
            return self.image


def git_mounts(workspace: Path) -> dict[str, dict[str, str]]:
    """Read-only mounts for a workspace that is a git repository: its .git/config (the sandbox
    cannot define a hook path, filter or diff driver there that git on the host would run), and,
    each at its own path, the object folders a `git clone --shared` borrows (listed in
    .git/objects/info/alternates), so git works in the sandbox while the repository they belong
    to cannot be written."""
    git_dir = workspace / ".git"
    mounts = {}
    if (git_dir / "config").is_file() and git_dir.is_dir():
        mounts[str((git_dir / "config").resolve())] = {"bind": f"{CONTAINER_WORKSPACE}/.git/config", "mode": "ro"}
    for path in borrowed_objects(git_dir / "objects"):
        mounts[str(path)] = {"bind": str(path), "mode": "ro"}
    return mounts


def borrowed_objects(objects: Path, depth: int = 5) -> list[Path]:
    """The object folders `objects` borrows, and those they borrow in turn (a task's clone of the
    run's clone of the repository), as git follows them (up to 5 deep)."""
    alternates = objects / "info" / "alternates"
    lines = alternates.read_text().splitlines() if alternates.is_file() and depth > 0 else []
    found = [Path(line) for line in lines if line.startswith("/") and Path(line).is_dir()]
    return [x for path in found for x in (path, *borrowed_objects(path, depth - 1))]


def network_mode_for(client: docker.DockerClient, network: bool | str) -> str:
    """The container's network mode for a plan's `network`; EnvironmentProblem with the fix when
    the engine cannot give it (an engine started with --bridge=none has no default bridge: a
    container on it would see only `lo`)."""
    if network is False:
        return "none"
    if network == "host":
        return "host"
    name = "bridge" if network is True else str(network)
    try:
        found = client.networks.list(names=[name])
    except ENGINE_ERRORS as exc:
        raise EnvironmentProblem(f"cannot list the Docker engine's networks: {exc}", "run `autodev doctor`") from exc
    if not any(n.name == name for n in found):
        if network is True:
            raise EnvironmentProblem(
                "the plan asks for a network, but the Docker engine has no default bridge network (it was started "
                "with --bridge=none): a sandbox on it could reach nothing",
                "set `network: host` in the plan (the host's network), name a Docker network "
                "(`docker network create NAME`, then `network: NAME`), or start dockerd without --bridge=none",
            )
        raise EnvironmentProblem(
            f"the plan's network {name!r} does not exist on the Docker engine",
            f"create it (`docker network create {name}`) or use `network: host`",
        )
    return name


def _sandbox_user(workspace: Path) -> str:
    """Run as the workspace's owner; a root-owned workspace is handed to the image's user.

    The sandbox never runs as root, and files it writes stay writable by the person who owns
    the workspace.
    """
    info = workspace.stat()
    if info.st_uid == 0:
        for root, dirs, files in os.walk(workspace):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.lchown(name, SANDBOX_UID, SANDBOX_UID)
        info = workspace.stat()
    return f"{info.st_uid}:{info.st_gid}"


def _status_dir(workspace: Path, run_id: str, user: str) -> None:
    """Create the run's status folder writable by the sandbox's user (the host may be root)."""
    folder = status_dir(workspace.resolve(), run_id)
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        uid, gid = (int(n) for n in user.split(":"))
        for path in (folder.parent.parent, folder.parent, folder):
            os.chown(path, uid, gid)


