"""Cost of a Prometheus scrape of `autodev metrics serve` as the results table grows.

For 1k, 10k and 100k stored step results, an exporter started on that history: its start
(it reads the history once, before serving), its first scrape, and the steady scrape (100 new
results since the previous one; the exporter reads only those), median of 20, through real
HTTP. Target: every scrape <= 50 ms at 100k, on SQLite and PostgreSQL.
Run: .venv/bin/python benchmarks/metrics_scrape.py [--database-url postgresql://...]
(default: a temporary SQLite file; give --database-url several times to compare).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autodev.blocks.store import ATTEMPT_COLUMNS, StateStore
from autodev.cli.exporter import serve
from autodev.core.models import utcnow
from autodev.core.plan import validate_plan

SIZES = (1_000, 10_000, 100_000)
STATUSES = ("succeeded", "succeeded", "succeeded", "failed", "stalled", "timed_out")


def fill(store, run_id: str, count: int, first_attempt: int) -> None:
    """Insert `count` results in one transaction (the shape runs write, without their pace)."""
    now = utcnow()
    rows = [
        (run_id, "s", first_attempt + i, "true", STATUSES[i % len(STATUSES)], i % 3, None,
         store._ts(now), store._ts(now + timedelta(seconds=i % 100)), float(i % 100), 10, "tail", None, 0)
        for i in range(count)
    ]
    marks = ", ".join(["{p}"] * 14)
    with store._transaction() as cur:
        cur.executemany(store._sql(f"INSERT INTO step_results ({ATTEMPT_COLUMNS}) VALUES ({marks})"), rows)


def scrape_ms(port: int) -> float:
    started = time.perf_counter()
    urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read()
    return (time.perf_counter() - started) * 1000


def measure(url: str, label: str) -> None:
    store = StateStore(database_url=url).connect()
    run_id = uuid.uuid4().hex
    store.sessions.create(run_id, validate_plan({"project": "bench", "steps": [{"id": "s", "run": "true"}]}), "/tmp", None)
    stored = 0
    try:
        for size in SIZES:
            fill(store, run_id, size - stored, stored + 1)
            stored = size
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            started = time.perf_counter()
            server, _ = serve(StateStore(database_url=url).connect(), "127.0.0.1", port)
            start_ms = (time.perf_counter() - started) * 1000
            try:
                first = scrape_ms(port)
                steady = []
                for _ in range(20):
                    fill(store, run_id, 100, stored + 1)
                    stored += 100
                    steady.append(scrape_ms(port))
            finally:
                server.shutdown()
            print(f"{label}: {size:>7,} results: exporter start {start_ms:6.1f} ms, first scrape {first:6.1f} ms, "
                  f"steady scrape p50 {statistics.median(steady):5.1f} ms, max {max(steady):5.1f} ms")
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", action="append", default=[])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="autodev-scrape-") as tmp:
        urls = args.database_url or [f"sqlite:///{tmp}/scrape.db"]
        for url in urls:
            measure(url, "postgresql" if url.startswith("postgres") else "sqlite")


if __name__ == "__main__":
    main()
