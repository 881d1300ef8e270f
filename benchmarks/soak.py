"""A soak: plans of every kind, one after another without a break, through the real CLI.

The mix, in turn: a run that succeeds; one that fails; one that stalls and blocks, which a person
then skips (`autodev resume --action skip`); one that trips the failure breaker, which a person
aborts; one whose orchestrator is killed with `kill -9` at a random moment and resumed. Each run
is checked as it ends:
- lost results: a step without its final state, a gap in its attempt numbers, a step that
  succeeded twice (0 expected);
- leaked containers: sandboxes left after the run (0 expected);
- the orchestrator's peak RSS (the `autodev` process of each run and resume; it must not grow);
- the state store's size, and its growth per run.
A line of figures is printed every `--every` seconds, and a summary at the end (also as
markdown with `--markdown FILE`, for `autodev report --include FILE`).

Run: .venv/bin/python benchmarks/soak.py --minutes 30 [--markdown FILE]
(uses PREFECT_API_URL if set, else starts `prefect server start` on a free loopback port for
the soak and stops it at the end). The seed's ">= 24 h trial" is `--minutes 1440`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AUTODEV = [str(Path(sys.executable).with_name("autodev"))]

PLANS = {
    "success": "project: soak-ok\nmax_parallel: 2\nsteps:\n"
    + "".join(f"  - {{id: s{n}, run: 'sleep 0.{n}; echo s{n} >> ran.txt'}}\n" for n in range(1, 5)),
    "failure": "project: soak-fail\nsteps:\n  - {id: build, run: 'echo broken >&2; exit 2'}\n  - {id: test, run: 'true', depends_on: [build]}\n",
    "stall": "project: soak-stall\ndefaults: {stall_timeout_s: 1, max_stall_retries: 0}\nsteps:\n"
    "  - {id: hang, run: 'echo waiting; sleep 600'}\n  - {id: after, run: 'echo after', depends_on: [hang]}\n",
    "breaker": "project: soak-breaker\nsteps:\n  - {id: wall, run: 'echo ModuleNotFoundError: No module named nope; exit 1', retries: 5}\n",
    "crash": "project: soak-crash\nsteps:\n"
    + "".join(f"  - {{id: s{n}, run: 'sleep 0.8; echo s{n} >> ran.txt'{', depends_on: [s' + str(n - 1) + ']' if n > 1 else ''}}}\n" for n in range(1, 5)),
}
EXPECTED = {"success": "succeeded", "failure": "failed", "stall": "succeeded", "breaker": "failed", "crash": "succeeded"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def prefect_server(workdir: Path):
    """PREFECT_API_URL when set; else a `prefect server start` of the soak's own, on loopback."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(workdir / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(240):
            try:
                if urllib.request.urlopen(f"{api}/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        yield api
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)


def autodev(env: dict[str, str], *args: str, kill_after: float | None = None) -> tuple[int, str, int]:
    """Run the CLI; its exit code (-9 when killed), stdout, and its peak RSS in KiB."""
    proc = subprocess.Popen([*AUTODEV, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if kill_after is not None:
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, out, usage.ru_maxrss


def run_one(kind: str, n: int, env: dict[str, str], workdir: Path, rng: random.Random) -> dict:
    """One plan of the mix, decided on as a person would; what it left behind."""
    plan = workdir / f"{kind}.yaml"
    plan.write_text(PLANS[kind])
    ws = workdir / "ws" / f"{n:05d}-{kind}"
    rss = []
    if kind == "crash":
        code, out, peak = autodev(env, "exec", str(plan), "--workspace", str(ws), "--json", kill_after=rng.uniform(2.0, 5.0))
    else:
        code, out, peak = autodev(env, "exec", str(plan), "--workspace", str(ws), "--json")
    rss.append(peak)
    run_id = json.loads(out)["run_id"] if out.strip() else latest_run(env)
    follow_up = {"stall": ["--action", "skip"], "breaker": ["--action", "abort"], "crash": []}.get(kind)
    if follow_up is not None and code != 0:
        code, out, peak = autodev(env, "resume", run_id, *follow_up, "--json")
        rss.append(peak)
    return {"kind": kind, "run_id": run_id, "status": json.loads(out)["status"] if out.strip() else "?", "rss_kib": rss}


def latest_run(env: dict[str, str]) -> str:
    path = env["AUTODEV_DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT run_id FROM agent_sessions ORDER BY created_at DESC LIMIT 1").fetchone()[0]


def check(run: dict, env: dict[str, str]) -> tuple[int, int]:
    """(lost results, leaked containers) of one finished run."""
    path = env["AUTODEV_DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        states = dict(conn.execute("SELECT step_id, status FROM step_states WHERE run_id = ?", (run["run_id"],)))
        attempts = conn.execute("SELECT step_id, attempt, status FROM step_results WHERE run_id = ?", (run["run_id"],)).fetchall()
        plan = json.loads(conn.execute("SELECT plan FROM session_plans WHERE run_id = ?", (run["run_id"],)).fetchone()[0])
    lost = sum(1 for s in plan["steps"] if s["id"] not in states)  # every step ends with a state
    for step_id in {a[0] for a in attempts}:
        numbers = sorted(a[1] for a in attempts if a[0] == step_id)
        lost += numbers != list(range(1, len(numbers) + 1))
    lost += sum(n - 1 for n in Counter(a[0] for a in attempts if a[2] == "succeeded").values() if n > 1)
    lost += run["status"] != EXPECTED[run["kind"]]
    leaked = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=autodev.run_id={run['run_id']}"],
                            capture_output=True, text=True).stdout.split()
    return lost, len(leaked)


def store_bytes(env: dict[str, str]) -> int:
    """The database file after a checkpoint: what the runs keep (SQLite's write-ahead log is a
    bounded scratch file, reused after each checkpoint)."""
    path = Path(env["AUTODEV_DATABASE_URL"].removeprefix("sqlite:///"))
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--every", type=float, default=60, help="seconds between lines of figures")
    parser.add_argument("--markdown", type=Path, help="also write the summary as markdown here")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="autodev-soak-"))
    rng = random.Random(1440)
    with prefect_server(workdir) as api:
        env = {**os.environ, "PREFECT_API_URL": api, "AUTODEV_DATABASE_URL": f"sqlite:///{workdir / 'soak.db'}",
               "AUTODEV_DECISION_TIMEOUT_S": "1", "AUTODEV_WORKSPACE_ROOT": str(workdir / "ws")}
        started, last_line, kinds = time.monotonic(), time.monotonic(), list(PLANS)
        runs, lost, leaked, rss_by_minute, sizes = [], 0, 0, [], []
        print("minute  runs  lost-results  leaked-containers  orchestrator-peak-RSS-MiB  store-MiB  store-KiB-per-run", flush=True)
        while time.monotonic() - started < args.minutes * 60:
            run = run_one(kinds[len(runs) % len(kinds)], len(runs), env, workdir, rng)
            run_lost, run_leaked = check(run, env)
            runs.append(run)
            lost, leaked = lost + run_lost, leaked + run_leaked
            sizes.append(store_bytes(env))
            if time.monotonic() - last_line >= args.every:
                last_line = time.monotonic()
                window = [kib for r in runs[-20:] for kib in r["rss_kib"]]
                rss_by_minute.append(max(window) / 1024)
                print(f"{(time.monotonic() - started) / 60:6.1f}  {len(runs):4d}  {lost:12d}  {leaked:17d}  "
                      f"{rss_by_minute[-1]:25.0f}  {sizes[-1] / 2**20:9.2f}  {sizes[-1] / len(runs) / 1024:17.1f}", flush=True)
    summary(runs, lost, leaked, rss_by_minute, sizes, time.monotonic() - started, args.markdown)


def summary(runs: list[dict], lost: int, leaked: int, rss: list[float], sizes: list[int], seconds: float, markdown: Path | None) -> None:
    peaks = [kib / 1024 for r in runs for kib in r["rss_kib"]]
    half = len(peaks) // 2 or 1
    growth = (sizes[-1] - sizes[len(sizes) // 2]) / max(len(sizes) - len(sizes) // 2, 1) if len(sizes) > 1 else 0
    rows = [
        ("duration", f"{seconds / 60:.1f} min"),
        ("runs (success, failure, stall+skip, breaker+abort, kill -9+resume)", f"{len(runs)} ({', '.join(f'{k} {v}' for k, v in Counter(r['kind'] for r in runs).items())})"),
        ("lost results", str(lost)),
        ("leaked containers", str(leaked)),
        ("orchestrator peak RSS, first half / second half of the runs (median)", f"{statistics.median(peaks[:half]):.0f} / {statistics.median(peaks[half:] or peaks):.0f} MiB"),
        ("orchestrator peak RSS, highest", f"{max(peaks):.0f} MiB"),
        ("state store at the end", f"{sizes[-1] / 2**20:.2f} MiB"),
        ("store growth per run (second half)", f"{growth / 1024:.1f} KiB"),
        ("this process's peak RSS", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"),
    ]
    print("\n".join(f"{name}: {value}" for name, value in rows))
    if markdown:
        table = "\n".join(f"| {name} | {value} |" for name, value in rows)
        markdown.write_text(
            "## Soak (`benchmarks/soak.py`)\n\n"
            "Plans of every kind through the real CLI without a break: success, failure, a stall skipped by a "
            "person, a breaker trip aborted by a person, a `kill -9` of the orchestrator followed by `autodev "
            f"resume`.\n\n| measure | result |\n|---|---|\n{table}\n\n"
            "Run it again with `.venv/bin/python benchmarks/soak.py --minutes 30 --markdown FILE` and "
            "`autodev report --include FILE`; the seed's 24-hour trial is `--minutes 1440`.\n",
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
