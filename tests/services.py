"""Throwaway services for the test session and the benchmarks: they listen on loopback only
and are stopped, their files removed, when the block ends."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bindir() -> Path | None:
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(bins[-1]).parent if bins else None


@contextmanager
def throwaway_postgres(bindir: Path, database: str = "autodev_test", fsync: bool = True) -> Iterator[str]:
    """A PostgreSQL server on 127.0.0.1 in a temporary directory; yields an empty database's URL."""
    data = Path(tempfile.mkdtemp(prefix="autodev-bench-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        shutil.chown(data, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port, pgdata = free_port(), data / "data"
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(pgdata), "-U", "autodev", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c max_connections=200" + ("" if fsync else " -c fsync=off")
    pg_ctl = [*as_user, str(bindir / "pg_ctl"), "-D", str(pgdata)]
    subprocess.run([*pg_ctl, "-o", opts, "-l", str(data / "log"), "-w", "start"], check=True, capture_output=True)
    base = f"postgresql://autodev@127.0.0.1:{port}"
    try:
        import psycopg

        for _ in range(50):
            try:
                with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
                    conn.execute(f"CREATE DATABASE {database}")
                break
            except psycopg.OperationalError:
                time.sleep(0.1)
        yield f"{base}/{database}"
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
