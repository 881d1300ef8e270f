"""The allow-list's way out of a sandbox: the egress proxy (`egress_proxy.py`, a process of
autodev's on this side) and a relay beside the sandbox container.

The sandbox container has no network (`network_mode: none`, only `lo`), so no process in it can
reach anything on its own, whatever it does with its environment. The relay (`egress_relay.py`)
runs in a second small container in the sandbox's network namespace, from autodev's own sandbox
image: it listens on 127.0.0.1:3128 there and passes each connection to the proxy's Unix socket,
mounted from a short host folder. Every command gets `HTTP(S)_PROXY` naming the relay, with its step and attempt as
the proxy credentials (what the proxy records a refusal under). The engine needs no bridge
(`--bridge=none` works). When the proxy dies, the relay answers 502 and nothing gets out: the
command fails closed, its result says why, and the proxy starts again for the next command.
"""

from __future__ import annotations

import contextlib
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import docker
import docker.errors

from autodev.core.egress import EgressRules, Refusal
from autodev.core.errors import EnvironmentProblem

RELAY_PORT = 3128
RELAY_FOLDER = "/run/autodev-egress"  # the host folder with the proxy's socket, in the relay (read-only)
START_TIMEOUT_S = 15.0
RELAY_SCRIPT = Path(__file__).with_name("egress_relay.py")  # stdlib only: runs on the image's python3


class EgressGate:
    """One sandbox's proxy and relay; `attach` puts the relay beside its container. `user` is the
    sandbox's (uid:gid): only it may connect to the proxy."""

    def __init__(self, rules: EgressRules, run_id: str, user: str, flow_run_id: str | None = None):
        self.labels = {"autodev.run_id": run_id, "autodev.flow_run_id": flow_run_id or run_id, "autodev.egress": "relay"}
        self.user = user
        # Short: a Unix socket's path may not be longer than 107 bytes.
        self.folder = Path(tempfile.mkdtemp(prefix="autodev-egress-"))
        self.folder.chmod(0o755)  # the relay runs as the sandbox's user
        (self.folder / "rules.json").write_text(rules.model_dump_json())
        self.refusals_file = self.folder / "refusals.jsonl"
        self.refusals_file.touch()
        self.relay = None
        self._proxy: subprocess.Popen | None = None
        self._reviving = threading.Lock()  # commands running side by side end at once
        try:
            self._start_proxy()
        except BaseException:
            self.close()
            raise

    def _start_proxy(self) -> None:
        """Start the proxy and wait until its socket listens; EnvironmentProblem when it does not."""
        args = [sys.executable, "-m", "autodev.blocks.sandbox.egress_proxy", str(self.folder / "proxy.sock"),
                str(self.folder / "rules.json"), str(self.refusals_file), self.user]  # fmt: skip
        with (self.folder / "proxy.log").open("ab") as log:
            self._proxy = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        assert self._proxy.stdout is not None
        ready, _, _ = select.select([self._proxy.stdout], [], [], START_TIMEOUT_S)
        if not ready or self._proxy.stdout.readline().strip() != b"ready":  # it says so once it listens, or dies
            self._proxy.kill()
            raise EnvironmentProblem(
                f"autodev's egress proxy did not start: {(self.folder / 'proxy.log').read_text()[-500:] or 'no word from it'}",
                "run `autodev doctor`; the allow-list needs the proxy (`network: {allow: [...]}`)",
            )

    def attach(self, client: docker.DockerClient, container, image: str) -> None:
        """Start the relay in `container`'s network namespace and wait until it listens."""
        mounts = {str(self.folder): {"bind": RELAY_FOLDER, "mode": "ro"}, str(RELAY_SCRIPT): {"bind": "/run/autodev-relay.py", "mode": "ro"}}
        self.relay = relay = client.containers.run(
            image, command=["python3", "/run/autodev-relay.py", str(RELAY_PORT), f"{RELAY_FOLDER}/proxy.sock"], detach=True,
            name=f"autodev-{self.labels['autodev.run_id']}-egress-{uuid.uuid4().hex[:6]}", network_mode=f"container:{container.id}",
            volumes=mounts, user=self.user, cap_drop=["ALL"], security_opt=["no-new-privileges"], labels=self.labels,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while b"listening" not in relay.logs():
            relay.reload()
            if relay.status == "exited" or time.monotonic() > deadline:
                said = relay.logs().decode(errors="replace")[-500:]
                raise EnvironmentProblem(
                    f"the allow-list's relay did not start in image {image!r}: {said or relay.status}",
                    "it needs python3 in autodev's sandbox image: rebuild it with `autodev image build`",
                )
            time.sleep(0.05)

    def env(self, step_id: str | None, attempt: int) -> dict[str, str]:
        """A command's proxy settings: its step and attempt as the credentials; `localhost` is
        the sandbox's own (its servers), never proxied."""
        who = f"{step_id or 'sandbox'}:{attempt}@"
        url = f"http://{who}127.0.0.1:{RELAY_PORT}"
        names = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
        return {**dict.fromkeys(names, url), "NO_PROXY": "localhost", "no_proxy": "localhost", "NODE_USE_ENV_PROXY": "1"}

    def revive(self) -> str | None:
        """Start the proxy again if it died; why it had died (None when it runs)."""
        with self._reviving:
            assert self._proxy is not None
            if (code := self._proxy.poll()) is None:
                return None
            self._start_proxy()
            return f"autodev's egress proxy stopped (exit code {code}) while the command ran: the sandbox had no network"

    def refused(self, step_id: str | None, attempt: int) -> list[Refusal]:
        """The connections the proxy refused to this step's attempt (a line being written is skipped)."""
        found = []
        for line in self.refusals_file.read_text().splitlines():
            with contextlib.suppress(ValueError):
                found.append(Refusal.model_validate_json(line))
        return [r for r in found if r.step_id == step_id and r.attempt == attempt]

    def close(self) -> None:
        """Stop the proxy and the relay; remove the folder. Safe to call twice."""
        if self._proxy is not None and self._proxy.poll() is None:
            assert self._proxy.stdin is not None
            self._proxy.stdin.close()  # it ends when its stdin closes
            try:
                self._proxy.wait(5)
            except subprocess.TimeoutExpired:
                self._proxy.kill()
        if self.relay is not None:
            with contextlib.suppress(docker.errors.DockerException):
                self.relay.remove(force=True)
        shutil.rmtree(self.folder, ignore_errors=True)
