"""The sandbox image: what it contains, and `autodev image build` from Debian packages."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from tests.helpers import AUTODEV

pytestmark = pytest.mark.docker
IMAGE = os.environ.get("AUTODEV_IMAGE", "autodev-sandbox:latest")
CHECK = "id -un; id -u; python3 --version; python3 -m pip --version; python3 -m venv --help >/dev/null && echo venv-ok; git --version; python3 -m pytest --version; echo $PATH"


def contents(docker_engine, image: str) -> str:
    return docker_engine.containers.run(image, ["sh", "-c", CHECK], remove=True, network_mode="none").decode()


def test_the_sandbox_image_has_the_toolchain_and_a_non_root_user(docker_engine):
    out = contents(docker_engine, IMAGE)
    lines = out.splitlines()
    assert lines[0] == "autodev" and lines[1] == "1000"
    assert lines[2].startswith("Python 3.")
    assert "pip" in lines[3] and "venv-ok" in out and "git version" in out and "pytest" in out
    assert lines[-1].startswith("/opt/venv/bin:")


@pytest.mark.slow
def test_image_build_falls_back_to_debian_packages_without_a_registry(docker_engine):
    """No image registry is reachable here, so `auto` must build from Debian packages."""
    tag = f"autodev-sandbox:test-{uuid.uuid4().hex[:8]}"
    try:
        result = subprocess.run(
            [*AUTODEV, "image", "build", "--tag", tag],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr
        assert "building from Debian packages" in result.stderr
        assert f"built {tag} from Debian packages" in result.stderr
        assert contents(docker_engine, tag).splitlines()[0] == "autodev"
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def test_unknown_build_method_is_bad_input():
    result = subprocess.run([*AUTODEV, "image", "build", "--method", "magic"], capture_output=True, text=True)
    assert result.returncode == 2 and "--method 'magic'" in result.stderr
