"""The overnight backlog at 1, 2, 4 and 8 tasks at once, side by side in one run.

A repository with one passing test and a task list of 8 tasks, each done by real Codex CLI
(the `autodev image build --agent codex` image) against a scripted Responses-API server on
loopback that "thinks" `--agent-s` seconds (20 by default) before each task's first answer, a
shell command that writes a file of its own. `autodev run TASKS.md --workspace REPO --agent codex
--parallel N` for N = 1, 2, 4, 8, each on a fresh copy of the repository; printed per N: the wall
time, its ratio to N = 1, the merge steps' mean time (the merge and the tests after it), and the
test runs the merge queue made per task.

Targets (issue 28): --parallel 4 in <= 0.35x the wall time of --parallel 1; the merge queue adds
<= 1 test run per task (plus the reruns failures cause; these tasks do not conflict).
Run: .venv/bin/python benchmarks/backlog.py [--agent-s 20] [--tasks 8]
(everything lives in a temporary directory: its own AUTODEV_HOME, store and local Prefect server,
stopped at the end, unless PREFECT_API_URL names a server).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.scripted_responses import ScriptedResponses, codex_config_args, message, shell

AUTODEV = [str(Path(sys.executable).with_name("autodev"))]


def repository(path: Path) -> Path:
    """A Python repository with one passing test, committed."""
    (path / "tests").mkdir(parents=True)
    (path / "tests" / "test_ok.py").write_text("def test_ok():\n    assert True\n")
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["-c", "user.name=me", "-c", "user.email=me@x", "commit", "-qm", "start"]):
        subprocess.run(["git", *command], cwd=path, check=True)
    return path


def night(workdir: Path, tasks: int, agent_s: float, parallel: int, env: dict[str, str]) -> dict:
    """One `autodev run --parallel N` on a fresh repository: its wall time and its merges' figures."""
    repo = repository(workdir / f"repo-{parallel}")
    document = workdir / "TASKS.md"
    document.write_text("# backlog\n\n" + "".join(f"- [ ] TASK-{k}: write f{k}.txt\n" for k in range(1, tasks + 1)))
    routes = {f"TASK-{k}:": [replace(shell(f"echo {k} > f{k}.txt"), delay_s=agent_s), message("done")] for k in range(1, tasks + 1)}
    with ScriptedResponses([], routes=routes) as model:
        args = " ".join(shlex.quote(a) for a in codex_config_args(model.base_url, env_key="OPENAI_API_KEY"))
        began = time.monotonic()
        done = subprocess.run(
            [*AUTODEV, "run", str(document), "--workspace", str(repo), "--agent", "codex", "--agent-args", args,
             "--network", "host", "--parallel", str(parallel), "--yes", "--json"],
            capture_output=True, text=True, timeout=3600, env=env,
        )  # fmt: skip
        wall = time.monotonic() - began
    if done.returncode != 0:
        raise SystemExit(f"--parallel {parallel} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout)
    merges = [s for s in report["steps"] if s["id"].startswith("merge-")]
    on_branch = subprocess.run(["git", "ls-tree", "--name-only", report["repository"]["branch"]], cwd=repo, capture_output=True, text=True).stdout.split()
    return {"wall": wall, "merge_s": sum(s["duration_s"] for s in merges) / max(len(merges), 1),
            "test_runs": sum(s["attempts"] for s in merges), "done": sum(f"f{k}.txt" in on_branch for k in range(1, tasks + 1))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent-s", type=float, default=20, help="seconds each task's agent works")
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 2, 4, 8])
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="autodev-backlog-") as tmp:
        workdir = Path(tmp)
        env = {**os.environ, "AUTODEV_HOME": str(workdir / "home"), "AUTODEV_DATABASE_URL": f"sqlite:///{workdir / 'autodev.db'}",
               "AUTODEV_WORKSPACE_ROOT": str(workdir / "workspaces"), "OPENAI_API_KEY": "sk-benchmark"}  # fmt: skip
        try:
            results = {n: night(workdir, options.tasks, options.agent_s, n, env) for n in options.parallel}
        finally:  # the local Prefect server the first run started (unless PREFECT_API_URL named one)
            subprocess.run([*AUTODEV, "server", "stop"], env=env, capture_output=True, timeout=120)
    base = results[options.parallel[0]]["wall"]
    print(f"{options.tasks} tasks, each agent working {options.agent_s:.0f} s (real Codex, scripted model):")
    for n, r in results.items():
        print(f"  --parallel {n}: {r['wall']:6.1f} s wall ({r['wall'] / base:.2f}x), {r['done']}/{options.tasks} tasks' work on the run's branch, "
              f"merge step {r['merge_s']:.1f} s each (merge + tests), {r['test_runs'] / options.tasks:.2f} test runs per task in the merge queue")  # fmt: skip
    if 4 in results and 1 in results:
        print(f"--parallel 4 / --parallel 1: {results[4]['wall'] / results[1]['wall']:.2f}  (target <= 0.35)")


if __name__ == "__main__":
    main()
