"""Building the sandbox image: Python 3, pip, venv, git, pytest and a non-root user `autodev`.

Two recipes give the same image: `src/autodev/blocks/sandbox.Dockerfile` where a registry serves the base
image, and Debian packages (mmdebstrap + `docker import`) where none is reachable, which is
the usual case on locked-down build machines. Both put a world-writable venv first on PATH so
`pip install` works for whichever uid the sandbox runs as, and changes die with the container.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import docker.errors

from autodev.blocks.sandbox.docker import docker_client
from autodev.core.errors import EnvironmentProblem

DOCKERFILE = Path(__file__).parent / "sandbox.Dockerfile"
DEBIAN_SUITE = "bookworm"
DEBIAN_PACKAGES = ["python3", "python3-venv", "python3-pip", "python3-pytest", "git", "procps", "ca-certificates"]
IMAGE_CONFIG = [
    "ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "WORKDIR /workspace",
    "USER autodev",
    'CMD ["sleep", "infinity"]',
]
Method = Literal["auto", "dockerfile", "debian"]


def build_image(tag: str, method: Method = "auto", say: Callable[[str], None] = print) -> str:
    """Build the image and return which recipe made it ("dockerfile" or "debian")."""
    started = time.monotonic()
    if method in ("auto", "dockerfile"):
        try:
            _build_from_dockerfile(tag, say)
            used = "dockerfile"
        except docker.errors.DockerException as exc:
            if method == "dockerfile":
                raise EnvironmentProblem(
                    f"building from {DOCKERFILE.name} failed: {exc}", "use --method debian where no registry is reachable"
                ) from exc
            say(f"no registry for the Dockerfile's base image ({_first_line(exc)}); building from Debian packages")
            used = None
        if used:
            say(f"built {tag} from {DOCKERFILE.name} in {time.monotonic() - started:.0f}s")
            return used
    _build_from_debian(tag, say)
    say(f"built {tag} from Debian packages in {time.monotonic() - started:.0f}s")
    return "debian"


def _build_from_dockerfile(tag: str, say: Callable[[str], None]) -> None:
    client = docker_client()
    say(f"building {tag} from {DOCKERFILE.name}")
    client.images.build(path=str(DOCKERFILE.parent), dockerfile=DOCKERFILE.name, tag=tag, rm=True, pull=True)


def _build_from_debian(tag: str, say: Callable[[str], None]) -> None:
    if shutil.which("mmdebstrap") is None:
        raise EnvironmentProblem("mmdebstrap is not installed", "apt-get install -y mmdebstrap")
    client = docker_client()
    hooks = [
        'chroot "$1" useradd --create-home --uid 1000 --shell /bin/bash autodev',
        'chmod 1777 "$1/home/autodev"',  # HOME for whichever uid the sandbox runs as
        'chroot "$1" python3 -m venv --system-site-packages /opt/venv',
        'chmod -R a+rwX "$1/opt/venv"',
        'mkdir -p "$1/workspace" && chmod 1777 "$1/workspace"',
        'rm -rf "$1/var/cache/apt/archives/"*.deb "$1/var/lib/apt/lists/"*',
    ]
    with tempfile.TemporaryDirectory(prefix="autodev-image-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        cmd = ["mmdebstrap", "--variant=apt", "--include=" + ",".join(DEBIAN_PACKAGES)]
        cmd += [f"--customize-hook={hook}" for hook in hooks]
        cmd += [DEBIAN_SUITE, str(rootfs)]
        say(f"mmdebstrap {DEBIAN_SUITE} with {', '.join(DEBIAN_PACKAGES)}")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise EnvironmentProblem(
                f"mmdebstrap failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}",
                "check that Debian's package mirror is reachable (apt-get update)",
            )
        changes = [arg for line in IMAGE_CONFIG for arg in ("--change", line)]
        say(f"docker import as {tag}")
        # The SDK's import_image cannot set the image config; the CLI's --change can.
        proc = subprocess.run(["docker", "import", *changes, str(rootfs), tag], capture_output=True, text=True)
        if proc.returncode != 0:
            raise EnvironmentProblem(f"docker import failed: {proc.stderr.strip()}", "check the Docker engine's log")
    client.close()


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:160]
