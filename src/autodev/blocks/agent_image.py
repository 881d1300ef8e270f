"""Building a sandbox image with a coding-agent CLI in it: `autodev image build --agent codex`.

The sandbox image is the base; the CLI comes from its own registry at build time (npm for
Codex and Claude Code, PyPI for aider), installed as root in a container that borrows the
host's network for the build only (an engine started with --bridge=none has no other), then
committed as a new image that runs as the non-root `autodev` user with HOME=/home/autodev,
labelled with the agent it holds (`autodev doctor` and `autodev exec` check the label).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import docker.errors
from docker.types import Mount

from autodev.blocks.sandbox.docker import ENGINE_ERRORS, SANDBOX_HOME, docker_client
from autodev.core.agents import AgentPreset
from autodev.core.errors import EnvironmentProblem

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")  # Debian's; a proxy's own CA is added to it
BUILD_CA = "/etc/ssl/certs/autodev-host-ca.crt"
AGENT_LABEL = "autodev.agents"  # the agents an image holds, comma-separated
# Debian's (Node.js 18): enough for Codex's launcher, and to install Claude Code's native binary
# (its package asks for Node.js 22, but the binary it installs needs no Node.js).
NODE_PACKAGES = "nodejs npm"


def install_script(preset: AgentPreset) -> str:
    """The shell script (run as root in the base image) that installs the preset's CLI."""
    kind, spec = preset.package.split(":", 1)
    if kind == "npm":
        return (
            "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; "
            f"apt-get install -y -qq --no-install-recommends {NODE_PACKAGES} >/dev/null; "
            f"npm install -g --no-fund --no-audit --loglevel=error {spec}; "
            f"rm -rf /var/lib/apt/lists/* /root/.npm; {preset.binary} --version"
        )
    return f"set -e; pip install --no-cache-dir -q {spec}; chmod -R a+rwX /opt/venv; {preset.binary} --version"


def _host_trust() -> dict:
    """The build trusts the certificate authorities the host trusts (a company proxy's among
    them): the host's bundle is mounted for the build only, and named to npm and pip in the
    script's own environment (the container's environment would be committed with the image)."""
    if not HOST_CA_BUNDLE.is_file():
        return {"prefix": "export HOME=/root; ", "mounts": []}
    names = ("NODE_EXTRA_CA_CERTS", "npm_config_cafile", "PIP_CERT", "SSL_CERT_FILE")
    prefix = "export HOME=/root " + " ".join(f"{name}={BUILD_CA}" for name in names) + "; "
    # A mount, not `volumes=`: the SDK would also declare a VOLUME, and the commit would keep it.
    return {"prefix": prefix, "mounts": [Mount(BUILD_CA, str(HOST_CA_BUNDLE), type="bind", read_only=True)]}


def agent_image_tag(base: str, preset: AgentPreset) -> str:
    """autodev-sandbox:latest -> autodev-sandbox-codex:latest."""
    name, _, tag = base.rpartition(":") if ":" in base.split("/")[-1] else (base, "", "latest")
    return f"{name}-{preset.name}:{tag or 'latest'}"


def build_agent_image(preset: AgentPreset, base: str, tag: str, say: Callable[[str], None] = print) -> None:
    started = time.monotonic()
    client = docker_client()
    try:
        held = client.images.get(base).labels.get(AGENT_LABEL, "")
    except docker.errors.ImageNotFound as exc:
        raise EnvironmentProblem(f"the base image {base!r} is missing", "build it first: `autodev image build`") from exc
    say(f"installing {preset.package} into {base} (the build uses the host's network)")
    trust = _host_trust()
    container = client.containers.run(
        base, ["/bin/sh", "-c", trust["prefix"] + install_script(preset)], user="root", network_mode="host", detach=True,
        working_dir="/", mounts=trust["mounts"],
    )
    try:
        code = int(container.wait().get("StatusCode", 1))
        log = container.logs().decode(errors="replace")
        if code != 0:
            raise EnvironmentProblem(
                f"installing {preset.package} failed (exit {code}): {' | '.join(log.strip().splitlines()[-5:])}",
                f"check that the {preset.package.split(':')[0]} registry is reachable from this machine, then build again",
            )
        agents = ",".join(sorted({*filter(None, held.split(",")), preset.name}))
        repository, _, version = tag.rpartition(":")
        container.commit(
            repository=repository, tag=version,
            changes=["USER autodev", f"ENV HOME={SANDBOX_HOME}", "WORKDIR /workspace", f"LABEL {AGENT_LABEL}={agents}"],
        )
    finally:
        with contextlib.suppress(*ENGINE_ERRORS):
            container.remove(force=True)
    version_line = log.strip().splitlines()[-1] if log.strip() else "?"
    say(f"built {tag} with {preset.name} ({version_line}) in {time.monotonic() - started:.0f}s")


def agents_in(client: docker.DockerClient, image: str) -> set[str]:
    """The agents an image says it holds (its label); empty for an image not built this way."""
    return set(filter(None, client.images.get(image).labels.get(AGENT_LABEL, "").split(",")))
