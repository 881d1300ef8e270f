"""Building the worker image for the Docker work pool: the sandbox image plus autodev itself.

A flow run of the Docker work pool runs in this image and starts its sandboxes on the host's
Docker engine (the socket is mounted). No registry or package index is needed at build time:
the Python dependencies are wheels built here from `requirements.lock` and installed in the
image with no network; the project's source is copied in and found through PYTHONPATH.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker.errors

from autodev.blocks.sandbox.docker import docker_client
from autodev.core.errors import EnvironmentProblem

PROJECT = Path(__file__).resolve().parents[3]
SOURCE_DIRS = ["src", "templates", "examples", "docs"]
SOURCE_FILES = ["prefect.yaml", "pyproject.toml", "requirements.lock"]
WORKER_DIR = "/opt/autodev"  # the source in the image; deployments of the Docker pool work here
DOCKERFILE = f"""FROM {{base}}
USER root
COPY wheels /tmp/wheels
COPY project {WORKER_DIR}
RUN python3 -m venv /opt/autodev-venv \\
 && /opt/autodev-venv/bin/pip install --no-index --find-links /tmp/wheels -r {WORKER_DIR}/requirements.lock \\
 && rm -rf /tmp/wheels
ENV PATH=/opt/autodev-venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PYTHONPATH={WORKER_DIR}/src PREFECT_SERVER_ANALYTICS_ENABLED=false
WORKDIR {WORKER_DIR}
LABEL autodev.source={{source}}
CMD ["python3", "-m", "autodev.cli", "--help"]
"""


def source_digest() -> str:
    """A digest of everything the image copies from this checkout: it tells a stale image."""
    digest = hashlib.sha256()
    files = [PROJECT / name for name in SOURCE_FILES]
    for name in SOURCE_DIRS:
        files += sorted(p for p in (PROJECT / name).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in files:
        digest.update(str(path.relative_to(PROJECT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def worker_image_is_current(tag: str) -> bool:
    """The image exists and was built from this checkout's source."""
    client = docker_client()
    try:
        return client.images.get(tag).labels.get("autodev.source") == source_digest()
    except docker.errors.ImageNotFound:
        return False
    finally:
        client.close()


def build_worker_image(tag: str, base: str, say: Callable[[str], None] = print) -> None:
    started = time.monotonic()
    client = docker_client()
    try:
        client.images.get(base)
    except docker.errors.ImageNotFound as exc:
        raise EnvironmentProblem(f"base image {base!r} is missing", "build it first with `autodev image build`") from exc
    version = client.containers.run(
        base, ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], remove=True, network_mode="none"
    ).decode().strip()
    here = "{}.{}".format(*sys.version_info[:2])
    if version != here:
        raise EnvironmentProblem(
            f"the base image has Python {version}, this machine {here}: the wheels built here would not fit",
            f"build the sandbox image from Debian packages (`autodev image build --method debian`) or run this with Python {version}",
        )
    with tempfile.TemporaryDirectory(prefix="autodev-worker-") as tmp:
        context = Path(tmp)
        say(f"building wheels for requirements.lock (Python {here})")
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "-r", str(PROJECT / "requirements.lock"), "-w", str(context / "wheels")],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise EnvironmentProblem(f"pip wheel failed: {proc.stderr.strip()[-800:]}", "check that the package index is reachable")
        for name in SOURCE_DIRS:
            shutil.copytree(PROJECT / name, context / "project" / name, ignore=shutil.ignore_patterns("__pycache__"))
        for name in SOURCE_FILES:
            shutil.copy2(PROJECT / name, context / "project" / name)
        (context / "Dockerfile").write_text(DOCKERFILE.format(base=base, source=source_digest()))
        say(f"building {tag} from {base} (no network needed)")
        try:
            client.images.build(path=str(context), tag=tag, rm=True, network_mode="none")
        except docker.errors.BuildError as exc:
            log = "".join(part.get("stream", "") for part in exc.build_log)[-800:]
            raise EnvironmentProblem(f"building {tag} failed: {exc}\n{log}", "see the build log above") from exc
    client.close()
    say(f"built {tag} in {time.monotonic() - started:.0f}s")
