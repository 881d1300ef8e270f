"""Time to the first command: from `autodev exec` starting to its first step starting.

Measured as a user meets it, one `autodev exec PLAN --json` process at a time (a one-step plan,
`echo hi`), from just before the process is spawned to the step's `started_at` in the state
store, in these set-ups:
1. a warm Prefect server named by PREFECT_API_URL, the command handed to autodev's warm process
   (the default once one runs), and with AUTODEV_WARM=off (a process of its own imports Prefect);
2. no PREFECT_API_URL, autodev's local server: the first run (it starts the server and the warm
   process) and the runs after it (they reuse both);
3. no PREFECT_API_URL and AUTODEV_PREFECT_SERVER=temporary: Prefect's temporary server per run.

Targets (issue 14): warm server <= 1.5 s; the managed server's second run <= 3 s.
Run: .venv/bin/python benchmarks/first_command.py [--runs 3]
(everything lives in a temporary directory: its own AUTODEV_HOME, store and servers, all
stopped at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

AUTODEV = [str(Path(sys.executable).with_name("autodev"))]
PLAN = "project: first\nsteps:\n  - {id: hello, run: 'echo hi'}\n"


def first_command_s(env: dict[str, str], plan: Path, workdir: Path) -> float:
    """Seconds from spawning `autodev exec` to its step's start, as the state store recorded it."""
    from autodev.blocks.store import StateStore

    spawned = time.time()
    done = subprocess.run([*AUTODEV, "exec", str(plan), "--json"], env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"autodev exec failed ({done.returncode}):\n{done.stderr[-2000:]}")
    run_id = json.loads(done.stdout)["run_id"]
    store = StateStore(database_url=env["AUTODEV_DATABASE_URL"]).connect()
    try:
        (attempt,) = store.attempts.of(run_id)
    finally:
        store.close()
    return attempt.result.started_at.timestamp() - spawned


def figures(values: list[float]) -> str:
    listed = " / ".join(f"{v:.2f}" for v in values)
    return f"median {statistics.median(values):.2f} s ({listed})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per set-up")
    args = parser.parse_args()

    from autodev.blocks.prefect_server import ManagedServer
    from autodev.cli.warm import socket_path

    with tempfile.TemporaryDirectory(prefix="autodev-first-") as tmp:
        workdir = Path(tmp)
        plan = workdir / "plan.yaml"
        plan.write_text(PLAN)
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        env.update(
            AUTODEV_HOME=str(workdir / "home"), AUTODEV_DATABASE_URL=f"sqlite:///{workdir / 'autodev.db'}",
            AUTODEV_WORKSPACE_ROOT=str(workdir / "ws"), AUTODEV_PREFECT_SERVER="managed",
            PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", AUTODEV_WARM="on",
        )  # fmt: skip
        server = ManagedServer(workdir / "home" / "server")
        try:
            starting = first_command_s(env, plan, workdir)
            deadline = time.monotonic() + 60  # the first run started the warm process in the background
            while not socket_path(env).exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            managed = [first_command_s(env, plan, workdir) for _ in range(args.runs)]
            warm_env = {**env, "PREFECT_API_URL": server.state().url or ""}
            warm = [first_command_s(warm_env, plan, workdir) for _ in range(args.runs)]
            cold = [first_command_s({**warm_env, "AUTODEV_WARM": "off"}, plan, workdir) for _ in range(args.runs)]
            server.stop()  # the warm process stays for the temporary server's runs
            temporary_env = {**env, "AUTODEV_PREFECT_SERVER": "temporary"}
            temporary = [first_command_s(temporary_env, plan, workdir) for _ in range(args.runs)]
        finally:
            subprocess.run([*AUTODEV, "server", "stop"], env=env, capture_output=True, timeout=60)

    print(f"time to the first command, {args.runs} runs each:")
    print(f"  warm server (PREFECT_API_URL), autodev's warm process: {figures(warm)}  (target <= 1.5 s)")
    print(f"  warm server (PREFECT_API_URL), AUTODEV_WARM=off: {figures(cold)}")
    print(f"  autodev's local server, first run (starts it and the warm process): {starting:.2f} s")
    print(f"  autodev's local server, next runs: {figures(managed)}  (target <= 3 s)")
    print(f"  temporary server per run (AUTODEV_PREFECT_SERVER=temporary): {figures(temporary)}")


if __name__ == "__main__":
    main()
