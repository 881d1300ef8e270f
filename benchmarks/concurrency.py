"""K plans at once against one Prefect server and one state store: does throughput scale?

For each state store backend (SQLite always; PostgreSQL with `--postgres URL`, or when the server
binaries exist under /usr/lib/postgresql/*/bin, a throwaway server on 127.0.0.1) and each level K
(`--levels 1,4,8,16`), K `autodev exec PLAN --json` processes start at once, each with its own
plan run of `--steps 30` trivial steps (`--command true`), all sharing one Prefect server and
one store. For each batch:
- aggregate throughput: succeeded steps of all K runs / the batch's wall time (from the launch
  to the last process's exit), and the speed-up over K=1 of the same backend;
- the Prefect server's CPU seconds per step (utime+stime of the server process and all its
  descendants from /proc, before and after the batch; n/a when PREFECT_API_URL names a server
  this script did not start);
- each run's peak RSS and the runs' CPU seconds per step (the `autodev` processes, start-up
  included, from wait4), and the Docker engine's (dockerd, containerd and the containers'
  shims, from /proc): with the server's, what the batch asks of this machine's cores;
- lost results: steps of a run whose last recorded attempt is missing or not succeeded (all of a
  run's steps when its process exits non-zero or prints no report);
- when each run's first command started after the launch (min / median / max over the K runs,
  from the store's first attempt of each run): K runs that start together should start soon.
A warm-up run per backend (image layers, imports, the store's schema) is not counted.
First, the floor at each level: K threads of raw `docker exec` (docker SDK), each in a container
of the sandbox image and as many commands long as a plan; its speed-up is what the engine alone
reaches on this machine's cores, with no orchestrator at all.
The summary adds the ceiling this machine puts on the speed-up: its cores over one run's CPU
per step (runs, server and engine), times one run's seconds per step. Trivial steps make the
runs CPU-bound, so the speed-up stops at that ceiling; steps that wait (`--command "sleep 1"`,
as a build or a model call does) leave the cores idle, and what a speed-up then misses is
something serializing the runs.

Targets (issue 14): 8 runs at once >= 4x one run's throughput; lost results 0; peak RSS per
run <= 150 MB.
Run: .venv/bin/python benchmarks/concurrency.py [--levels 1,4,8,16] [--steps 30] [--command true]
                                                [--postgres URL] [--no-postgres] [--prefect-postgres]
     .venv/bin/python benchmarks/concurrency.py --quick  (levels 1,2: a smoke run)
(uses PREFECT_API_URL if set, else starts a Prefect server as autodev starts its local one: a free
loopback port, its own home, task-run states recorded in batches; stopped at the end). That
server's own database is SQLite, as autodev's local server's is; `--prefect-postgres` puts it
on a throwaway PostgreSQL server instead (the remedy for many runs at once).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autodev.cli.warm import running_warm_processes, socket_path  # noqa: E402
from benchmarks.batch_report import Batch, Child, one_run_of, print_batch, print_raw_batch, summarize  # noqa: E402
from benchmarks.references import execs_at_once, reference_containers  # noqa: E402
from tests.services import postgres_bindir, throwaway_postgres  # noqa: E402

_CLI = Path(sys.executable).with_name("autodev")
AUTODEV = [str(_CLI)] if _CLI.exists() else [sys.executable, "-m", "cli"]
QUIET = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}


@contextmanager
def prefect_server(workdir: Path):
    """(API URL, server pid): PREFECT_API_URL with no pid when set; else a server of our own,
    started and stopped as autodev manages its local one (loopback, its own home)."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"], None
        return
    from autodev.blocks.prefect_server import ManagedServer

    server = ManagedServer(workdir / "server")
    try:
        api = server.ensure()
        yield api, server.state().pid
    finally:
        server.stop()


def proc_stats():
    """(pid, command name, the fields after it) of every process in /proc/*/stat."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone while we looked
        yield int(stat.parent.name), text[text.index("(") + 1 : text.rindex(")")], text.rsplit(")", 1)[1].split()


def cpu_s(fields: list[str]) -> float:
    """utime, stime and the children it reaped (cutime, cstime), in seconds."""
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(root_pid: int | None) -> float | None:
    """CPU seconds of root_pid, all its live descendants and the children they reaped (Linux /proc)."""
    if root_pid is None:
        return None
    parent, cpu = {}, {}
    for pid, _comm, fields in proc_stats():
        parent[pid], cpu[pid] = int(fields[1]), cpu_s(fields)
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        children = [pid for pid, ppid in parent.items() if ppid in frontier and pid not in tree]
        tree.update(children)
        frontier = children
    return sum(cpu.get(pid, 0.0) for pid in tree)


ENGINE = ("dockerd", "containerd", "containerd-shim")  # /proc comm is cut at 15 characters


def engine_cpu_s() -> float:
    """CPU seconds of the Docker engine's processes and the children they reaped (the execs)."""
    return sum(cpu_s(fields) for _pid, comm, fields in proc_stats() if comm.startswith(ENGINE))


@contextmanager
def forks_peak_rss(warm_pid: int | None):
    """Yields {pid: peak RSS in KiB} of the warm process's forks (the runs), sampled every 0.2 s
    while the block runs (VmHWM: pages shared with the warm process included)."""
    peaks: dict[int, int] = {}
    done = threading.Event()

    def sample() -> None:
        while warm_pid and not done.wait(0.2):
            for pid, _comm, fields in proc_stats():
                if int(fields[1]) == warm_pid:
                    with suppress(OSError, ValueError, IndexError, StopIteration):  # a zombie has no VmHWM
                        line = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("VmHWM"))
                        peaks[pid] = max(peaks.get(pid, 0), int(line.split()[1]))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peaks
    finally:
        done.set()
        sampler.join()


def write_plan(workdir: Path, name: str, steps: int, command: str) -> Path:
    plan = workdir / f"{name}.yaml"
    step = json.dumps(command)  # a YAML flow scalar
    plan.write_text(f"project: {name}\nsteps:\n" + "".join(f"  - {{id: s{i:03d}, run: {step}}}\n" for i in range(steps)))
    return plan


def launch(env: dict[str, str], plan: Path, k: int, workdir: Path, tag: str) -> tuple[list[Child], float, datetime]:
    """K `autodev exec` processes started at once; waits for all; (children, wall seconds, launch time)."""
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    children: list[Child] = []
    started, launched_at = time.monotonic(), datetime.now(UTC)
    for i in range(k):
        out, err = logs / f"{tag}-{i}.out", logs / f"{tag}-{i}.err"
        ws = workdir / "ws" / f"{tag}-{i}"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen([*AUTODEV, "exec", str(plan), "--workspace", str(ws), "--json"],
                                    cwd=ROOT, env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
        children.append(Child(i, proc, out, err))
    for child in children:  # one pid at a time: wait4(-1) could reap the Prefect server
        _, status, usage = os.wait4(child.proc.pid, 0)
        child.code = child.proc.returncode = os.waitstatus_to_exitcode(status)
        child.rss_kib = usage.ru_maxrss
        child.cpu_s = usage.ru_utime + usage.ru_stime
    wall = time.monotonic() - started
    for child in children:
        child.run_id = report_run_id(child.out)
    return children, wall, launched_at


def report_run_id(out: Path) -> str | None:
    """The run id from the last JSON object the process printed, or None."""
    for line in reversed(out.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line).get("run_id")
            except json.JSONDecodeError:
                continue
    return None


def lost_steps(database_url: str, children: list[Child], steps: int, launched_at: datetime) -> tuple[int, int]:
    """(succeeded, lost) steps over the batch, from the store's recorded attempts; sets each
    child's first_command_s."""
    from autodev.blocks.store import StateStore

    store = StateStore(database_url=database_url).connect()
    succeeded = lost = 0
    try:
        for child in children:
            if child.code != 0 or child.run_id is None:
                lost += steps
                continue
            last: dict[str, str] = {}
            attempts = store.attempts.of(child.run_id)
            for attempt in attempts:  # ordered by id: the last one wins
                last[attempt.step_id] = attempt.result.status
            if attempts:
                child.first_command_s = (min(a.result.started_at for a in attempts) - launched_at).total_seconds()
            ok = sum(1 for status in last.values() if status == "succeeded")
            succeeded, lost = succeeded + ok, lost + steps - ok
    finally:
        store.close()
    return succeeded, lost


def run_batch(backend: str, env: dict[str, str], plan: Path, k: int, steps: int, workdir: Path, server_pid: int | None) -> Batch:
    warm_pid = next(iter(running_warm_processes(env)), None)
    cpu_before, engine_before, warm_before = tree_cpu_s(server_pid), engine_cpu_s(), tree_cpu_s(warm_pid) or 0.0
    with forks_peak_rss(warm_pid) as fork_rss_kib:
        children, wall, launched_at = launch(env, plan, k, workdir, f"{backend}-k{k}")
    cpu_after = tree_cpu_s(server_pid)
    batch = Batch(backend, k, steps, wall, engine_cpu_s=engine_cpu_s() - engine_before)
    if cpu_before is not None and cpu_after is not None:
        batch.server_cpu_s = cpu_after - cpu_before
    batch.succeeded, batch.lost = lost_steps(env["AUTODEV_DATABASE_URL"], children, steps, launched_at)
    batch.first_command_s = sorted(c.first_command_s for c in children if c.first_command_s is not None)
    batch.rss_mb = [kib / 1024 for kib in (fork_rss_kib.values() if warm_pid else [c.rss_kib for c in children])] or [0.0]
    # With a warm process the runs are its forks: their CPU is its children's.
    batch.runs_cpu_s = sum(c.cpu_s for c in children) + ((tree_cpu_s(warm_pid) or 0.0) - warm_before)
    batch.failures = [c for c in children if c.code != 0 or c.run_id is None]
    return batch


def bench_backend(backend: str, database_url: str, api: str, server_pid: int | None, args, workdir: Path) -> list[Batch]:
    """The warm-up run, then one batch per level, against one store."""
    env = {**os.environ, **QUIET, "PREFECT_API_URL": api, "AUTODEV_DATABASE_URL": database_url,
           "AUTODEV_WORKSPACE_ROOT": str(workdir / "ws"), "AUTODEV_HOME": str(workdir / "home"),
           "AUTODEV_WARM": "off" if args.no_warm else "on"}  # fmt: skip
    warm = run_batch(f"{backend}-warm", env, write_plan(workdir, "bench-warm", 3, "true"), 1, 3, workdir, server_pid)
    if warm.failures:
        print_batch(warm, None)
    deadline = time.monotonic() + 60  # the warm-up run started autodev's warm process
    while not args.no_warm and not socket_path(env).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    plan = write_plan(workdir, f"bench-{args.steps}", args.steps, args.command)
    batches: list[Batch] = []
    for k in args.levels:
        batch = run_batch(backend, env, plan, k, args.steps, workdir, server_pid)
        print_batch(batch, one_run_of(batches, batch))
        batches.append(batch)
    return batches


def bench_raw_exec(args) -> list[Batch]:
    """The floor: at each level, K threads of raw docker exec, each in a container of its own
    and `--steps` commands long, with no orchestrator at all."""
    batches: list[Batch] = []
    for k in args.levels:
        with reference_containers(k) as containers:
            engine_before = engine_cpu_s()
            wall = execs_at_once(containers, args.steps, args.command)
            engine_s = engine_cpu_s() - engine_before
        batch = Batch("raw", k, args.steps, wall, succeeded=k * args.steps, engine_cpu_s=engine_s)
        print_raw_batch(batch, one_run_of(batches, batch))
        batches.append(batch)
    return batches


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,4,8,16", help="how many runs at once, comma-separated")
    parser.add_argument("--steps", type=int, default=30, help="steps per plan")
    parser.add_argument("--command", default="true", help="every step's command (default: true, a trivial step)")
    parser.add_argument("--postgres", metavar="URL", help="also measure against this (empty) PostgreSQL database")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only, even when PostgreSQL binaries exist")
    parser.add_argument("--prefect-postgres", action="store_true",
                        help="the Prefect server's own database on a throwaway PostgreSQL (default: SQLite, as autodev's local server)")
    parser.add_argument("--quick", action="store_true", help="levels 1,2: a smoke run")
    parser.add_argument("--no-warm", action="store_true", help="AUTODEV_WARM=off: each run imports Prefect in its own process")
    args = parser.parse_args()
    args.levels = [1, 2] if args.quick else sorted({int(k) for k in args.levels.split(",") if k.strip()})
    if not args.levels or min(args.levels) < 1 or args.steps < 1:
        parser.error("--levels and --steps take positive numbers")
    return args


def main() -> None:
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="autodev-bench-conc-"))
    bindir = None if args.postgres or args.no_postgres else postgres_bindir()
    results: list[list[Batch]] = []
    print(f"levels {args.levels}, {args.steps} steps of {args.command!r} per plan, {os.cpu_count()} CPUs; logs in {workdir / 'logs'}", flush=True)
    try:
        with ExitStack() as stack:
            if args.prefect_postgres:
                prefect_bindir = postgres_bindir()
                if prefect_bindir is None:
                    sys.exit("--prefect-postgres: no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
                prefect_db = stack.enter_context(throwaway_postgres(prefect_bindir, database="prefect"))
                # read by the server this script starts (its environment is this one's)
                os.environ["PREFECT_API_DATABASE_CONNECTION_URL"] = prefect_db.replace("postgresql://", "postgresql+asyncpg://", 1)
            api, server_pid = stack.enter_context(prefect_server(workdir))
            where = f"started here, pid {server_pid}, on {'PostgreSQL' if args.prefect_postgres else 'SQLite'}" if server_pid else "PREFECT_API_URL"
            print(f"Prefect server {api} ({where})", flush=True)
            results.append(bench_raw_exec(args))
            results.append(bench_backend("sqlite", f"sqlite:///{workdir / 'bench.db'}", api, server_pid, args, workdir))
            if args.postgres:
                results.append(bench_backend("postgres", args.postgres, api, server_pid, args, workdir))
            elif bindir is not None:
                with throwaway_postgres(bindir) as url:
                    results.append(bench_backend("postgres", url, api, server_pid, args, workdir))
    finally:
        subprocess.run([*AUTODEV, "server", "stop"], env={**os.environ, "AUTODEV_HOME": str(workdir / "home")}, capture_output=True, timeout=60)
        for batches in results:
            summarize(batches)
    for scratch in ("ws", "server/prefect"):  # the logs and the SQLite store stay for a look
        shutil.rmtree(workdir / scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
