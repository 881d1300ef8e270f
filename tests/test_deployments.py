"""autodev deployed like any Prefect project: `prefect deploy --all`, a process worker,
`prefect deployment run`, against a real `prefect server start` (SQLite, loopback)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import AUTODEV, prefect_server_process, task_runs

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.postgres]


@pytest.fixture(params=["sqlite", "postgres"])
def prefect_server(request, tmp_path):
    """`prefect server start` on loopback, on its own SQLite file or on a PostgreSQL database."""
    database = {}
    if request.param == "postgres":
        url = request.getfixturevalue("fresh_postgres_url")
        database = {"PREFECT_API_DATABASE_CONNECTION_URL": url.replace("postgresql://", "postgresql+asyncpg://", 1)}
    with prefect_server_process(tmp_path, database) as env:
        yield env


def prefect(env, *args, timeout=180) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "prefect", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


def deploy_all(env) -> str:
    """`autodev deploy`, as docs/operations.md says: the work pools, the block types, every
    deployment of prefect.yaml; what it printed."""
    done = subprocess.run([*AUTODEV, "deploy"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "deployment autodev-plan-docker: deployed" in done.stdout and "deployment nightly-experiments" in done.stdout
    assert "deployment nightly-backlog: deployed" in done.stdout
    return done.stdout


def wait_completed(api: str, runs: list[str], timeout_s: float, pause_s: float, each=None) -> None:
    """Until every flow run is Completed (none may fail or crash); `each` is called every round."""
    deadline = time.monotonic() + timeout_s
    while True:
        if each is not None:
            each()
        states = [httpx.get(f"{api}/flow_runs/{r}").json()["state"]["type"] for r in runs]
        if all(s == "COMPLETED" for s in states):
            return
        assert time.monotonic() < deadline and not {"FAILED", "CRASHED"} & set(states), states
        time.sleep(pause_s)


@contextlib.contextmanager
def workers(env, count: int = 1):
    """`prefect worker start` on the process pool, `count` of them, stopped on the way out whatever
    happened: SIGINT first (SIGTERM has left a worker running past 30 s), then, for a worker still
    there after 60 s on a loaded machine, SIGKILL to its process group, flow runs included."""
    started = [
        subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", "autodev-process", "--name", f"w{i}"],
                         env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for i in range(count)
    ]
    try:
        yield started
    finally:
        for worker in started:
            worker.send_signal(signal.SIGINT)
        for worker in started:
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(10)


def test_a_deployment_run_executes_the_plan_like_autodev_exec(prefect_server, tmp_path):
    env = prefect_server
    api = env["PREFECT_API_URL"]
    first = deploy_all(env)
    assert "work pool autodev-process (process): created" in first and "block type 'autodev Docker sandbox': registered" in first
    again = deploy_all(env)  # idempotent: what exists stays, the deployments are updated
    assert "work pool autodev-process (process): exists" in again
    doctor = subprocess.run([*AUTODEV, "doctor"], env=env, capture_output=True, text=True, timeout=120)
    assert "not set up: the notification automations" in doctor.stdout  # deployed without a webhook URL
    plan = tmp_path / "deployed.yaml"  # a plan given by its path, as the worker sees the file system
    plan.write_text(
        "project: deployed\nsteps:\n  - {id: hello, run: 'echo from a deployment > out.txt'}\n"
        "  - {id: after, run: 'cat out.txt', depends_on: [hello]}\n"
    )
    started = prefect(env, "deployment", "run", "autodev-plan/autodev-plan",
                      "--param", f"plan={plan}", "--param", f"workspace={tmp_path / 'ws'}")
    flow_run_id = started.stdout.split("/runs/flow-run/")[1].split()[0].strip()
    prefect(env, "worker", "start", "--pool", "autodev-process", "--run-once", timeout=240)

    flow_run = httpx.get(f"{api}/flow_runs/{flow_run_id}").json()
    assert flow_run["state"]["type"] == "COMPLETED"
    runs = task_runs(api, flow_run_id, ["after", "hello"])
    assert sorted(t["name"] for t in runs if t["name"] != "insights") == ["after", "hello"]
    artifacts = httpx.post(f"{api}/artifacts/latest/filter", json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}).json()
    assert {"autodev-steps", "autodev-progress", "autodev-run-summary"} <= {a["key"] for a in artifacts}

    status = subprocess.run([*AUTODEV, "status", flow_run_id, "--json"],
                            env=env, capture_output=True, text=True, timeout=60)
    report = json.loads(status.stdout)  # the same state store records as `autodev exec`
    assert report["status"] == "succeeded"
    assert report["steps"][1]["output_tail"] == "from a deployment\n"


def test_the_docker_work_pool_runs_the_flow_in_the_worker_image(prefect_server, docker_engine, worker_image, tmp_path):
    env = prefect_server
    api = env["PREFECT_API_URL"]
    deploy_all(env)
    plan = {"project": "in-docker", "steps": [
        {"id": "hello", "run": "echo from the docker pool > out.txt"},
        {"id": "after", "run": "cat out.txt", "depends_on": ["hello"]},
    ]}
    shared = tmp_path / "shared"  # mounted at the same path in the worker's container
    shared.mkdir()
    started = prefect(
        env, "deployment", "run", "autodev-plan/autodev-plan-docker", "--param", f"plan={json.dumps(plan)}",
        "--param", f"workspace={shared / 'ws'}",
        "--job-variable", f"volumes={json.dumps(['/var/run/docker.sock:/var/run/docker.sock', f'{shared}:{shared}'])}",
        "--job-variable", f"env={json.dumps({'AUTODEV_DATABASE_URL': f'sqlite:///{shared}/autodev.db'})}",
    )
    flow_run_id = started.stdout.split("/runs/flow-run/")[1].split()[0].strip()
    prefect(env, "worker", "start", "--pool", "autodev-docker", "--type", "docker", "--run-once", timeout=300)

    flow_run = httpx.get(f"{api}/flow_runs/{flow_run_id}").json()
    assert flow_run["state"]["type"] == "COMPLETED" and flow_run["work_pool_name"] == "autodev-docker"
    assert flow_run["infrastructure_pid"]  # the worker's container
    runs = task_runs(api, flow_run_id, ["after", "hello"])
    assert sorted(t["name"] for t in runs if t["name"] != "insights") == ["after", "hello"]
    status = subprocess.run([*AUTODEV, "status", flow_run_id, "--json"], capture_output=True, text=True,
                            env={**env, "AUTODEV_DATABASE_URL": f"sqlite:///{shared}/autodev.db"}, timeout=60)
    report = json.loads(status.stdout)  # written from inside the worker's container, read here
    assert report["status"] == "succeeded" and report["steps"][1]["output_tail"] == "from the docker pool\n"
    assert (shared / "ws" / "out.txt").read_text() == "from the docker pool\n"


def test_the_weather_bot_deployment_develops_the_project_through_a_worker(prefect_server, docker_engine, tmp_path):
    env = prefect_server
    api = env["PREFECT_API_URL"]
    deploy_all(env)
    started = prefect(env, "deployment", "run", "autodev-develop/weather-bot", "--param", f"workspace={tmp_path / 'ws'}")
    flow_run_id = started.stdout.split("/runs/flow-run/")[1].split()[0].strip()
    prefect(env, "worker", "start", "--pool", "autodev-process", "--run-once", timeout=300)

    assert httpx.get(f"{api}/flow_runs/{flow_run_id}").json()["state"]["type"] == "COMPLETED"
    children = httpx.post(f"{api}/flow_runs/filter", json={"flow_runs": {"parent_flow_run_id": {"any_": [flow_run_id]}}}).json()
    plan_run = next(c for c in children if c["name"].startswith("weather-bot-"))
    expected = ["check-scaffold", "demo", "implement", "implement", "test", "test"]  # one feedback round
    names = sorted(t["name"] for t in task_runs(api, plan_run["id"], expected) if t["name"] != "insights")
    assert names == expected
    status = subprocess.run([*AUTODEV, "status", plan_run["id"], "--json"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(status.stdout)["status"] == "succeeded"


def test_cancelling_a_deployed_run_stops_its_command_and_removes_its_sandbox(prefect_server, docker_engine, tmp_path):
    env = prefect_server
    api = env["PREFECT_API_URL"]
    deploy_all(env)
    plan = {"project": "to-cancel", "steps": [{"id": "long", "run": "echo started; sleep 600"}]}
    started = prefect(env, "deployment", "run", "autodev-plan/autodev-plan",
                      "--param", f"plan={json.dumps(plan)}", "--param", f"workspace={tmp_path / 'ws'}")
    flow_run_id = started.stdout.split("/runs/flow-run/")[1].split()[0].strip()
    with workers(env):
        label = {"label": f"autodev.flow_run_id={flow_run_id}"}
        deadline = time.monotonic() + 120
        while not docker_engine.containers.list(filters=label):
            assert time.monotonic() < deadline, "the run's sandbox never started"
            time.sleep(0.5)
        time.sleep(1)
        prefect(env, "flow-run", "cancel", flow_run_id)
        deadline = time.monotonic() + 90
        while True:
            state = httpx.get(f"{api}/flow_runs/{flow_run_id}").json()["state"]["type"]
            gone = not docker_engine.containers.list(all=True, filters=label)
            if state == "CANCELLED" and gone:
                break
            assert time.monotonic() < deadline, f"state {state}, sandbox removed: {gone}"
            time.sleep(0.5)
    status = subprocess.run([*AUTODEV, "status", flow_run_id, "--json"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(status.stdout)["status"] == "failed"


@pytest.mark.parametrize("prefect_server", ["sqlite"], indirect=True)
def test_two_workers_share_one_postgres_state_store_without_losing_results(prefect_server, fresh_postgres_url, tmp_path):
    env = {**prefect_server, "AUTODEV_DATABASE_URL": fresh_postgres_url}
    api = env["PREFECT_API_URL"]
    deploy_all(env)
    runs = []
    for n in range(4):
        plan = {"project": f"shared-{n}", "steps": [{"id": f"s{i}", "run": f"echo run {n} step {i}"} for i in range(5)]}
        started = prefect(env, "deployment", "run", "autodev-plan/autodev-plan",
                          "--param", f"plan={json.dumps(plan)}", "--param", f"workspace={tmp_path / f'ws{n}'}")
        runs.append(started.stdout.split("/runs/flow-run/")[1].split()[0].strip())
    with workers(env, count=2):
        wait_completed(api, runs, timeout_s=240, pause_s=1)

    from autodev.blocks.store import StateStore

    store = StateStore(database_url=fresh_postgres_url).connect()
    try:
        for n, run_id in enumerate(runs):
            attempts = store.attempts.of(run_id)
            assert [(a.step_id, a.attempt) for a in attempts] == [(f"s{i}", 1) for i in range(5)]
            assert [a.result.output_tail for a in attempts] == [f"run {n} step {i}\n" for i in range(5)]
            assert store.sessions.get(run_id).status == "succeeded"
    finally:
        store.close()


@pytest.mark.parametrize("prefect_server", ["sqlite"], indirect=True)
def test_blocks_registered_and_edited_in_prefect_are_loaded_by_name(prefect_server, tmp_path):
    env = prefect_server
    api = env["PREFECT_API_URL"]
    for module in ("autodev.blocks.sandbox.docker", "autodev.blocks.store", "autodev.blocks.llm"):
        prefect(env, "block", "register", "-m", module)
    types = {t["name"] for t in httpx.post(f"{api}/block_types/filter", json={}).json()}
    assert {"autodev Docker sandbox", "autodev state store", "autodev LLM"} <= types

    team_db = tmp_path / "team.db"
    subprocess.run(  # as a person would in the UI: save a sandbox and a state store under names
        [sys.executable, "-c",
         "from autodev.blocks.sandbox.docker import DockerSandbox; from autodev.blocks.store import StateStore; "
         "DockerSandbox(image='autodev-sandbox:latest', memory='256m').save('small'); "
         f"StateStore(database_url='sqlite:///{team_db}').save('team')"],
        env=env, cwd=ROOT, check=True, timeout=60,
    )
    deploy_all(env)
    plan = {"project": "blocks", "steps": [{"id": "limit", "run": "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"}]}
    started = prefect(env, "deployment", "run", "autodev-plan/autodev-plan", "--param", f"plan={json.dumps(plan)}",
                      "--param", f"workspace={tmp_path / 'ws'}", "--param", "sandbox_block=small",
                      "--param", "state_store_block=team")
    flow_run_id = started.stdout.split("/runs/flow-run/")[1].split()[0].strip()
    prefect(env, "worker", "start", "--pool", "autodev-process", "--run-once", timeout=240)

    from autodev.blocks.store import StateStore

    store = StateStore(database_url=f"sqlite:///{team_db}").connect()
    try:
        (attempt,) = store.attempts.of(flow_run_id)  # in the block's state store, not the default one
    finally:
        store.close()
    assert attempt.result.output_tail == f"{256 * 1024 * 1024}\n"  # the block's memory limit


def sandboxes_now(docker_engine, runs: list[str]) -> list[str]:
    """Which of these runs have a sandbox container this moment (the engine may hold other
    tests' sandboxes while they are removed)."""
    labelled = docker_engine.containers.list(filters={"label": "autodev.run_id"})
    return [c.labels["autodev.run_id"] for c in labelled if c.labels["autodev.run_id"] in runs]


@pytest.mark.parametrize("prefect_server", ["sqlite"], indirect=True)
def test_queued_runs_respect_the_pool_limit_and_each_projects_limit(prefect_server, docker_engine, tmp_path):
    """20 queued runs, a work-pool concurrency limit of 4 and a global concurrency limit of 2 for
    one project (Prefect's own controls): never more sandboxes at once than either allows, and
    every run finishes."""
    env = prefect_server
    api = env["PREFECT_API_URL"]
    deploy_all(env)
    prefect(env, "work-pool", "set-concurrency-limit", "autodev-process", "4")
    prefect(env, "gcl", "create", "autodev-project-narrow", "--limit", "2")
    runs = []
    for n in range(20):
        project = "narrow" if n % 2 else "wide"
        plan = {"project": project, "steps": [{"id": "work", "run": "sleep 2"}]}
        started = prefect(env, "deployment", "run", "autodev-plan/autodev-plan",
                          "--param", f"plan={json.dumps(plan)}", "--param", f"workspace={tmp_path / f'ws{n}'}")
        runs.append(started.stdout.split("/runs/flow-run/")[1].split()[0].strip())
    seen: list[list[str]] = []
    with workers(env):
        wait_completed(api, runs, timeout_s=400, pause_s=0.2, each=lambda: seen.append(sandboxes_now(docker_engine, runs)))

    from autodev.blocks.store import StateStore

    store = StateStore(database_url=env["AUTODEV_DATABASE_URL"]).connect()
    try:
        project_of = {s.run_id: s.project for s in store.sessions.recent(50)}
        assert sorted(project_of) == sorted(runs) and all(store.sessions.get(r).status == "succeeded" for r in runs)
    finally:
        store.close()
    assert 2 <= max(len(now) for now in seen) <= 4  # runs at once, never more than the pool allows
    assert max(sum(project_of[r] == "narrow" for r in now) for now in seen) <= 2
