"""What autodev adds to each command, measured side by side in one process run.

1. N trivial steps (`true`) through autodev (plan flow, one Prefect task per step, state store
   writes, events) against two references run in a container of the same image, in
   alternating rounds: the bare Prefect peer (what a user would write instead: a Prefect 3
   flow whose tasks docker-exec each command and log its output) and raw `docker exec`
   (docker SDK `exec_run`), the floor. Per-step ratios against both, with the median and
   every round's figure; and the time between one command's end and the next one's start in
   both flows (what the loop itself costs, apart from the engine's exec time, which is noisy).
2. A 1,000-step plan: mean step-to-step interval of the last 100 steps over the first 100
   (does the loop slow down as a run grows?).
3. Peak RSS of this process.

Targets (issue 14): autodev / bare Prefect peer <= 1.0 (autodev adds less than the peer's own
overhead); autodev / raw docker exec is reported (the rest is Prefect's engine and server);
last/first <= 1.2, peak RSS <= 400 MB. `--long 10000` compares the last 1,000 steps with the
first 1,000.
Run: .venv/bin/python benchmarks/step_overhead.py [--steps 200] [--rounds 3] [--long 1000] 2>/dev/null
(uses PREFECT_API_URL if set, else a temporary Prefect server; the runs log at Prefect's
default level, as any run does, and stderr carries those logs).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from benchmarks.references import raw_docker_exec, reference_container


def plan_of(n: int, project: str):
    from autodev.core.plan import validate_plan

    return validate_plan(
        {"project": project, "steps": [{"id": f"s{i:04d}", "run": "true"} for i in range(n)]}, source="benchmark"
    )


def through_autodev(n: int, workdir: Path) -> tuple[float, list]:
    """Seconds per step through the plan flow, and the recorded attempts."""
    from autodev.blocks.store import StateStore
    from autodev.core.settings import load_settings
    from autodev.flows.plan_flow import plan_parameter, run_plan

    started = time.perf_counter()
    workspace = workdir / f"ws-{n}"
    report = run_plan(plan=plan_parameter(plan_of(n, f"bench-{n}"), workspace), workspace=str(workspace))
    elapsed = time.perf_counter() - started
    store = StateStore(database_url=load_settings().database_url).connect()
    attempts = store.attempts.of(report.run_id)
    store.close()
    first, last = attempts[0].result.started_at, attempts[-1].result.finished_at
    return (last - first).total_seconds() / n, attempts, elapsed


def bare_prefect_peer(n: int) -> tuple[float, float]:
    """Seconds per command through a plain Prefect flow: one task per command, each docker-execs
    it in a container of the same image and logs its output, one after another; and the mean
    seconds between one command's end and the next one's start."""
    from prefect import flow, get_run_logger, task

    from autodev.blocks.sandbox.docker import docker_client

    spans: list[tuple[float, float]] = []

    @task(persist_result=False)
    def docker_exec(container_id: str, command: str) -> int:
        container = client.containers.get(container_id)
        begun = time.perf_counter()
        result = container.exec_run(["sh", "-c", command])
        spans.append((begun, time.perf_counter()))
        get_run_logger().info(result.output.decode(errors="replace"))
        return result.exit_code

    @flow(persist_result=False)
    def peer(container_id: str) -> float:
        started = time.perf_counter()
        for _ in range(n):
            assert docker_exec(container_id, "true") == 0
        return (time.perf_counter() - started) / n

    client = docker_client()
    container = reference_container(client)
    try:
        per_step = peer(container.id)
        return per_step, statistics.mean(b[0] - a[1] for a, b in zip(spans, spans[1:], strict=False))
    finally:
        container.remove(force=True)
        client.close()


def child_cpu_s() -> float | None:
    """CPU seconds used so far by this process's children: the temporary Prefect server, when
    PREFECT_API_URL is not set (Linux /proc; None elsewhere)."""
    try:
        total, tick = 0.0, os.sysconf("SC_CLK_TCK")
        for stat in Path("/proc").glob("[0-9]*/stat"):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid():  # ppid
                total += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        return total
    except OSError:
        return None


def between_commands(attempts: list) -> float:
    """Mean seconds from one step's command ending to the next one's starting: the loop's own time."""
    return statistics.mean(
        (b.result.started_at - a.result.finished_at).total_seconds() for a, b in zip(attempts, attempts[1:], strict=False)
    )


def intervals(attempts: list) -> list[float]:
    starts = [a.result.started_at for a in attempts]
    return [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]


def ratio_line(ours: list[float], refs: list[float]) -> str:
    """Each autodev round against the reference rounds just before and after it (the engine
    drifts, and one round is noisy on a small machine): the median ratio and every round's."""
    ratios = [o / ((before + after) / 2) for o, before, after in zip(ours, refs, refs[1:], strict=False)]
    return f"median {statistics.median(ratios):.2f} (rounds: {', '.join(f'{r:.2f}' for r in ratios)})"


def ms(values: list[float]) -> str:
    return " / ".join(f"{v * 1000:.1f}" for v in values)


def side_by_side(steps: int, rounds: int, workdir: Path) -> None:
    """Per-step time and the gaps between commands, autodev against both references. Rounds
    alternate: the references, then autodev, then the references again (ratio_line)."""
    raws = [raw_docker_exec(steps)]
    peer_step, peer_gap = bare_prefect_peer(steps)
    peers, peer_gaps = [peer_step], [peer_gap]
    ours: list[float] = []
    our_gaps: list[float] = []
    server_cpu = 0.0
    for _ in range(rounds):
        cpu_before = child_cpu_s()
        per_step, attempts, wall = through_autodev(steps, workdir)
        our_gaps.append(between_commands(attempts))
        cpu_after = child_cpu_s()
        if cpu_before is not None and cpu_after is not None:
            server_cpu += cpu_after - cpu_before
        ours.append(per_step)
        raws.append(raw_docker_exec(steps))
        peer_step, peer_gap = bare_prefect_peer(steps)
        peers.append(peer_step)
        peer_gaps.append(peer_gap)
    print(f"per step, {rounds} rounds of {steps} trivial steps: autodev {ms(ours)} ms; "
          f"bare Prefect peer {ms(peers)} ms; raw docker exec {ms(raws)} ms")
    print(f"  flow wall time incl. sandbox start/stop (last round): {wall:.2f} s")
    print(f"against the bare Prefect peer: {ratio_line(ours, peers)}  (target <= 1.0)")
    print(f"against raw docker exec (the floor): {ratio_line(ours, raws)}")
    print(f"between one command's end and the next one's start: autodev {ms(our_gaps)} ms; "
          f"bare Prefect peer {ms(peer_gaps)} ms")
    if server_cpu:  # the temporary server shares this machine's cores with the steps
        print(f"  temporary Prefect server's CPU: {server_cpu / (rounds * steps) * 1000:.1f} ms per step")


def growth(steps: int, workdir: Path) -> None:
    """Does the loop slow down as a run grows: the last steps' intervals against the first ones'."""
    _, attempts, wall = through_autodev(steps, workdir)
    gaps, window = intervals(attempts), max(100, steps // 10)
    first, last = statistics.mean(gaps[:window]), statistics.mean(gaps[-window:])
    print(f"{steps}-step plan: {wall:.1f} s; first {window} steps {first * 1000:.1f} ms/step, "
          f"last {window} {last * 1000:.1f} ms/step")
    print(f"last/first ratio: {last / first:.2f}  (target <= 1.2)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="steps in the side-by-side comparison")
    parser.add_argument("--rounds", type=int, default=3, help="autodev rounds in the side-by-side comparison")
    parser.add_argument("--long", type=int, default=1000, help="steps in the growth run (>= 200)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="autodev-bench-") as tmp:
        workdir = Path(tmp)
        os.environ.setdefault("AUTODEV_DATABASE_URL", f"sqlite:///{workdir / 'bench.db'}")
        through_autodev(5, workdir)  # warm up: server, image layers, imports
        side_by_side(args.steps, args.rounds, workdir)
        growth(args.long, workdir)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak_mb:.0f} MB  (target <= 400 MB)")


if __name__ == "__main__":
    main()
