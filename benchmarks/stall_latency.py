"""How fast a silent command is caught, and how fast people hear about it.

1. Over N trials, a real command prints a line and then hangs in the Docker sandbox with a
   1 s stall timeout: detection time minus (last output + stall timeout). Target: max <= 1 s.
2. Over M trials, a plan blocks on a stall with the notification automations applied: the delay
   from the step's end (the kill) to the webhook's arrival at an HTTP receiver on loopback, and
   one delivered payload as it arrived.
3. Over K trials, an agent step stopped by its provider's limit ("429 Too Many Requests: try
   again in 8s", a scripted agent CLI) waits and runs again: the limit-wait overshoot, its second
   attempt's start minus the reset, with nothing else running (the run pauses for a decision
   until the reset) and beside a step that runs on (the loop's own timer).
Run: .venv/bin/python benchmarks/stall_latency.py [--trials 20] [--notify 3] [--limit 3] 2>/dev/null
(part 2 uses PREFECT_API_URL if set, else a temporary Prefect server).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

STALL_S = 1.0


def detection_latencies(trials: int, workdir: Path) -> list[float]:
    from autodev.blocks.sandbox.docker import DockerSandbox
    from autodev.core.commands import CommandRequest
    from autodev.core.settings import load_settings

    latencies = []
    with DockerSandbox(image=load_settings().image).open(workdir, "stall-bench") as sandbox:
        for _ in range(trials):
            last_output = [0.0]

            def seen(chunk: bytes, last_output: list[float] = last_output) -> None:
                last_output[0] = time.monotonic()

            request = CommandRequest(command="echo working; sleep 100", timeout_s=60, stall_timeout_s=STALL_S)
            result = sandbox.run(request, seen)
            assert result.status == "stalled", result
            latencies.append(time.monotonic() - (last_output[0] + STALL_S))
    return latencies


class Receiver(BaseHTTPRequestHandler):
    arrivals: list[tuple[float, dict]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        Receiver.arrivals.append((time.time(), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def notification_delays(trials: int, workdir: Path) -> tuple[list[float], dict]:
    from autodev.blocks.store import StateStore
    from autodev.core.plan import validate_plan
    from autodev.core.settings import load_settings
    from autodev.flows.automations import apply
    from autodev.flows.plan_flow import run_plan

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ["AUTODEV_DECISION_TIMEOUT_S"] = "1"
    apply(f"http://127.0.0.1:{server.server_port}/hook", "http://127.0.0.1:4200")
    time.sleep(3)  # the trigger service picks up the automations
    delays, payload = [], {}
    plan = validate_plan(
        {"project": "stall-bench", "defaults": {"stall_timeout_s": STALL_S, "max_stall_retries": 0},
         "steps": [{"id": "quiet", "run": "echo before the silence; sleep 600"}]}
    )
    try:
        for i in range(trials):
            state = run_plan(plan=plan, workspace=str(workdir / f"n{i}"), return_state=True)
            run_id = state.result(raise_on_failure=False).report.run_id
            store = StateStore(database_url=load_settings().database_url).connect()
            killed_at = store.attempts.of(run_id)[-1].result.finished_at.timestamp()
            store.close()
            deadline = time.time() + 120
            while time.time() < deadline:
                got = [(t, b) for t, b in Receiver.arrivals if b.get("run") == run_id and b["event"] == "autodev.run.blocked"]
                if got:
                    delays.append(got[0][0] - killed_at)
                    payload = got[0][1]
                    break
                time.sleep(0.05)
            else:
                raise SystemExit(f"no notification for run {run_id} within 120 s")
    finally:
        server.shutdown()
    return delays, payload


LIMITED_AGENT = ("sh -c 'if [ -f .hit ]; then echo done; else touch .hit; echo \"429 Too Many Requests: try again in {reset:g}s\"; "
                 "exit 1; fi' # {{instruction}}")


def limit_overshoots(trials: int, workdir: Path, beside: bool, reset_s: float = 8.0) -> list[float]:
    """Seconds from each limit's reset to its step's next start (a scripted agent that hits the
    limit once), alone or `beside` a step that keeps running meanwhile."""
    from autodev.blocks.store import StateStore
    from autodev.core.plan import validate_plan
    from autodev.core.report import RunReport
    from autodev.core.settings import load_settings
    from autodev.flows.plan_flow import run_plan

    steps = [{"id": "agent", "kind": "agent", "instruction": "work", "agent_command": LIMITED_AGENT.format(reset=reset_s)}]
    if beside:
        steps.append({"id": "long", "run": "sleep 20"})
    plan = validate_plan({"project": "limit-bench", "max_parallel": 2, "steps": steps})
    overshoots = []
    for i in range(trials):
        outcome = run_plan(plan=plan, workspace=str(workdir / f"l{int(beside)}{i}"), return_state=True).result(raise_on_failure=False)
        run_id = outcome.run_id if isinstance(outcome, RunReport) else outcome.report.run_id
        store = StateStore(database_url=load_settings().database_url).connect()
        first, second = [a.result for a in store.attempts.of(run_id) if a.step_id == "agent"]
        store.close()
        overshoots.append(second.started_at.timestamp() - (first.finished_at.timestamp() + reset_s))
    return overshoots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--notify", type=int, default=3)
    parser.add_argument("--limit", type=int, default=3, help="limit-wait trials, alone and beside a running step")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="autodev-stall-") as tmp:
        workdir = Path(tmp)
        os.environ.setdefault("AUTODEV_DATABASE_URL", f"sqlite:///{workdir / 'bench.db'}")
        lat = detection_latencies(args.trials, workdir)
        print(f"stall detection over {args.trials} trials (stall timeout {STALL_S:g}s), "
              f"detection - (last output + timeout): p50 {statistics.median(lat) * 1000:.0f} ms, "
              f"max {max(lat) * 1000:.0f} ms  (target max <= 1000 ms)")
        if args.notify:
            delays, payload = notification_delays(args.notify, workdir)
            print(f"kill -> webhook delivered over {args.notify} runs: p50 {statistics.median(delays):.1f} s, "
                  f"max {max(delays):.1f} s")
            print("one delivered payload:")
            print(json.dumps(payload, indent=2))
        for beside in (False, True) if args.limit else ():
            over = limit_overshoots(args.limit, workdir, beside)
            where = "beside a running step" if beside else "nothing else running"
            print(f"limit-wait overshoot ({where}) over {args.limit} trials: p50 {statistics.median(over):.2f} s, "
                  f"max {max(over):.2f} s (the second attempt's start minus the reset)")


if __name__ == "__main__":
    main()
