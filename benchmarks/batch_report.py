"""What one batch of benchmarks/concurrency.py (K runs at once) measured, and how it is printed:
a row per batch, the tails of the runs that failed, and a summary per series against the targets."""

from __future__ import annotations

import os
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Child:
    """One `autodev exec` of a batch and what it left behind."""

    index: int
    proc: subprocess.Popen
    out: Path
    err: Path
    code: int | None = None
    rss_kib: int = 0
    cpu_s: float = 0.0
    run_id: str | None = None
    first_command_s: float | None = None  # from the batch's launch to its first attempt's start


@dataclass
class Batch:
    backend: str
    k: int
    steps: int
    wall_s: float
    succeeded: int = 0
    lost: int = 0
    server_cpu_s: float | None = None
    engine_cpu_s: float = 0.0
    rss_mb: list[float] = field(default_factory=list)
    runs_cpu_s: float = 0.0
    failures: list[Child] = field(default_factory=list)
    first_command_s: list[float] = field(default_factory=list)

    @property
    def per_s(self) -> float:
        return self.succeeded / self.wall_s if self.wall_s else 0.0


def first_commands(seconds: list[float]) -> str:
    if not seconds:
        return "n/a"
    return f"{seconds[0]:.1f} / {statistics.median(seconds):.1f} / {seconds[-1]:.1f} s"


def tail(path: Path, lines: int = 8) -> str:
    return "\n".join("      " + ln for ln in path.read_text(errors="replace").splitlines()[-lines:])


def one_run_of(earlier: list[Batch], batch: Batch) -> Batch | None:
    """The K=1 batch of a series: among the earlier ones, or this one."""
    return next((b for b in earlier if b.k == 1), batch if batch.k == 1 else None)


def speed_up(batch: Batch, one_run: Batch | None) -> str:
    return f"{batch.per_s / one_run.per_s:.2f}x" if one_run and one_run.per_s else "n/a"


def print_batch(batch: Batch, one_run: Batch | None) -> None:
    speedup = speed_up(batch, one_run)
    total = batch.k * batch.steps
    cpu = f"{batch.server_cpu_s / total * 1000:.1f} ms" if batch.server_cpu_s is not None else "n/a"
    runs_cpu = f"{batch.runs_cpu_s / total * 1000:.0f} ms"  # the autodev processes, start-up included
    engine = f"{batch.engine_cpu_s / total * 1000:.0f} ms"
    print(f"{batch.backend:8s} K={batch.k:<3d} {batch.wall_s:7.1f} s  {batch.per_s:6.1f} steps/s  speed-up {speedup:>6s}  "
          f"server CPU/step {cpu:>8s}  runs' CPU/step {runs_cpu:>6s}  engine CPU/step {engine:>6s}  RSS/run max {max(batch.rss_mb):.0f} MB (min {min(batch.rss_mb):.0f})  "
          f"lost {batch.lost}/{total}  first command after {first_commands(batch.first_command_s)}", flush=True)
    if batch.failures:
        print(f"  exit codes: {[c.code for c in sorted(batch.failures, key=lambda c: c.index)]}"
              f" ({len(batch.failures)} of {batch.k} runs failed or printed no report)")
        for child in batch.failures[:3]:
            print(f"    run {child.index}: exit {child.code}, stderr tail:\n{tail(child.err)}")


def print_raw_batch(batch: Batch, one_run: Batch | None) -> None:
    """The row of a batch of raw `docker exec`: the engine's own, no orchestrator."""
    print(f"{'raw':8s} K={batch.k:<3d} {batch.wall_s:7.1f} s  {batch.per_s:6.1f} steps/s  speed-up {speed_up(batch, one_run):>6s}  "
          f"engine CPU/step {batch.engine_cpu_s / (batch.k * batch.steps) * 1000:.0f} ms  (docker exec alone)", flush=True)


def summarize(batches: list[Batch]) -> None:
    one_run = next((b for b in batches if b.k == 1), None)
    eight = next((b for b in batches if b.k == 8), None)
    backend = batches[0].backend
    if backend == "raw":
        top = eight or max(batches, key=lambda b: b.k)
        print(f"raw docker exec, {top.k} at once: {speed_up(top, one_run)} one's throughput (what the engine alone reaches on these cores)")
        return
    if one_run and one_run.per_s:
        cpu_per_step = (one_run.runs_cpu_s + one_run.engine_cpu_s + (one_run.server_cpu_s or 0)) / one_run.succeeded
        ceiling = (os.cpu_count() or 1) / cpu_per_step / one_run.per_s
        print(f"{backend}: this machine's ceiling, estimated: {ceiling:.2f}x ({os.cpu_count()} cores, {cpu_per_step * 1000:.0f} ms CPU "
              f"per step of one run, {1 / one_run.per_s * 1000:.0f} ms wall per step)")
    if one_run and eight and one_run.per_s:
        print(f"{backend}: 8 at once: {eight.per_s / one_run.per_s:.2f}x one run's throughput (target >= 4x)")
    else:
        top = max(batches, key=lambda b: b.k)
        print(f"{backend}: 8 at once: not measured (levels {[b.k for b in batches]}; {top.k} at once: {speed_up(top, one_run)}) (target >= 4x)")
    print(f"{backend}: lost results: {sum(b.lost for b in batches)} (target 0)")
    print(f"{backend}: RSS per run: max {max(max(b.rss_mb) for b in batches):.0f} MB (target <= 150 MB)")
