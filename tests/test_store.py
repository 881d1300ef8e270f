"""The state store on both backends: schema, metadata document, results, concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import threading
import time
import uuid
from datetime import timedelta

import psycopg
import pytest

from autodev.blocks.state_store import SCHEMA_VERSION, StateStore
from autodev.core.models import CommandResult, StepAttempt, utcnow
from autodev.core.plan import parse_plan
from autodev.core.session import LastCommandResult, QueueEntry

pytestmark = pytest.mark.postgres
PLAN = parse_plan("project: p\nsteps:\n  - {id: a, run: 'echo a'}\n  - {id: b, run: 'exit 1'}")


def open_store(url: str):
    return StateStore(database_url=url).connect()


def new_run(store) -> str:
    run_id = uuid.uuid4().hex
    store.create_session(run_id, PLAN, "/tmp/ws", flow_run_id=run_id)
    return run_id


def test_migrations_are_versioned_and_idempotent(database_url):
    store = open_store(database_url)
    assert store.schema_version() == SCHEMA_VERSION
    assert store.migrate() == SCHEMA_VERSION  # a second run changes nothing
    store.close()
    again = open_store(database_url)
    assert again.schema_version() == SCHEMA_VERSION
    again.close()


def test_session_metadata_round_trip_and_history_cap(database_url):
    store = open_store(database_url)
    run_id = new_run(store)
    t0 = utcnow()
    for i in range(25):
        store.update_session(
            run_id,
            lambda m, i=i: m.record_result(
                LastCommandResult(text=f"out {i}", exit_code=i % 3, ts=t0 + timedelta(seconds=i), step_id="a")
            ),
        )
    session = store.get_session(run_id)
    meta = session.metadata
    assert [h.text for h in meta.command_history] == [f"out {i}" for i in range(5, 25)]
    assert meta.last_command_result.text == "out 24" and meta.last_command_result.exit_code == 24 % 3
    assert session.plan == PLAN and session.status == "running"
    store.update_session(run_id, status="failed")
    assert store.get_session(run_id).status == "failed"
    assert store.latest_session().run_id == run_id
    store.close()


def test_every_attempt_is_kept(database_url):
    store = open_store(database_url)
    run_id = new_run(store)
    now = utcnow()
    for attempt, code in [(1, 1), (2, 0)]:
        result = CommandResult(
            status="succeeded" if code == 0 else "failed",
            exit_code=code,
            started_at=now,
            finished_at=now + timedelta(seconds=1.5),
            output_bytes=3,
            output_tail="é\ufffd\n",
        )
        store.record_attempt(StepAttempt(run_id=run_id, step_id="a", attempt=attempt, command="echo a", result=result))
    attempts = store.attempts(run_id)
    assert [(a.attempt, a.result.exit_code) for a in attempts] == [(1, 1), (2, 0)]
    assert attempts[0].result.duration_s == pytest.approx(1.5)
    assert attempts[1].result.output_tail == "é\ufffd\n"
    store.close()


def test_an_attempt_and_the_step_states_it_settles_are_written_together(database_url):
    store = open_store(database_url)
    run_id = new_run(store)
    now = utcnow()
    failed = CommandResult(status="failed", exit_code=1, started_at=now, finished_at=now)
    attempt = StepAttempt(run_id=run_id, step_id="a", attempt=1, command="echo a", result=failed)
    store.record_attempt(attempt, {"a": "failed", "b": "skipped"})
    assert store.step_states(run_id) == {"a": "failed", "b": "skipped"}
    # A state the write cannot store (NOT NULL) undoes the attempt with it: never one without the other.
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.NotNullViolation)):
        store.record_attempt(attempt.model_copy(update={"attempt": 2}), {"a": None})
    assert [a.attempt for a in store.attempts(run_id)] == [1]
    assert store.step_states(run_id) == {"a": "failed", "b": "skipped"}
    store.close()


def test_unknown_exit_code_is_stored_as_null(database_url):
    store = open_store(database_url)
    run_id = new_run(store)
    now = utcnow()
    result = CommandResult(status="failed", exit_code=None, exit_reason="engine lost", started_at=now, finished_at=now)
    store.record_attempt(StepAttempt(run_id=run_id, step_id="a", attempt=1, command="x", result=result))
    (stored,) = store.attempts(run_id)
    assert stored.result.exit_code is None and stored.result.exit_reason == "engine lost"
    store.close()


def _append_queue_entries(url: str, run_id: str, writer: int, count: int) -> None:
    store = open_store(url)
    for i in range(count):
        entry = QueueEntry(queue_id=f"{writer}-{i}", step_id="a", attempt=1, dispatched_at=utcnow())
        store.update_session(run_id, lambda m, e=entry: m.queue.append(e))
    store.close()


def test_concurrent_writers_in_several_processes_lose_nothing(database_url):
    store = open_store(database_url)
    run_id = new_run(store)
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_append_queue_entries, args=(database_url, run_id, w, 25)) for w in range(4)]
    for p in writers:
        p.start()
    threads = [threading.Thread(target=_append_queue_entries, args=(database_url, run_id, 10 + t, 25)) for t in range(2)]
    for t in threads:
        t.start()
    for p in writers:
        p.join(120)
        assert p.exitcode == 0
    for t in threads:
        t.join(120)
    queue = store.get_session(run_id).metadata.queue
    assert len(queue) == 6 * 25
    assert len({q.queue_id for q in queue}) == 6 * 25
    store.close()


def test_password_never_shown_and_unreachable_database_is_an_environment_problem():
    from autodev.core.errors import EnvironmentProblem

    with pytest.raises(EnvironmentProblem) as info:
        open_store("postgresql://me:s3cret@127.0.0.1:1/none")
    assert "s3cret" not in str(info.value)
    assert "unreachable" in str(info.value) and "AUTODEV_DATABASE_URL" in str(info.value)


def test_an_old_schema_is_upgraded_in_place_keeping_its_data(database_url, monkeypatch):
    import autodev.blocks.store_base as store_base

    monkeypatch.setattr(store_base, "MIGRATIONS", store_base.MIGRATIONS[:1])
    old = open_store(database_url)
    assert old.schema_version() == 1
    run_id = uuid.uuid4().hex
    with old._transaction() as cur:  # a session and an attempt written by a version-1 autodev
        cur.execute(
            old._sql(
                "INSERT INTO agent_sessions (run_id, project, status, workspace, flow_run_id, plan, metadata, created_at, "
                "updated_at) VALUES ({p}, 'p', 'failed', '/tmp/ws', NULL, CAST({p} AS {json}), CAST({p} AS {json}), {p}, {p})"
            ),
            (run_id, json.dumps(PLAN.model_dump(mode="json")), "{}", old._ts(utcnow()), old._ts(utcnow())),
        )
        cur.execute(
            old._sql(
                "INSERT INTO step_results (run_id, step_id, attempt, command, status, exit_code, started_at, "
                "finished_at, duration_s, output_bytes, output_tail) VALUES ({p}, 'a', 1, 'echo a', 'failed', 1, {p}, {p}, 0.5, 2, {p})"
            ),
            (run_id, old._ts(utcnow()), old._ts(utcnow()), "x\n"),
        )
    old.close()
    monkeypatch.undo()

    upgraded = open_store(database_url)
    assert upgraded.schema_version() == SCHEMA_VERSION
    (attempt,) = upgraded.attempts(run_id)
    assert attempt.result.output_tail == "x\n" and attempt.breaker_tripped is False
    session = upgraded.get_session(run_id)
    assert session.plan == PLAN and session.owner is None and session.lease_until is None
    upgraded.close()


def test_one_process_at_a_time_holds_a_run_and_a_dead_ones_hold_runs_out(database_url):
    from autodev.blocks.store_base import LeaseLost
    from autodev.core.session import Lease

    store = open_store(database_url)
    run_id = uuid.uuid4().hex
    first, second = Lease(owner="flow-1@h:1", seconds=0.3), Lease(owner="flow-2@h:2", seconds=30)
    store.create_session(run_id, PLAN, "/tmp/ws", run_id, lease=first)
    assert not store.take_lease(run_id, second)  # the first holder is alive
    with pytest.raises(LeaseLost):
        store.update_session(run_id, status="running", lease=second)
    assert store.renew_lease(run_id, first) and store.get_session(run_id).owner == "flow-1@h:1"
    time.sleep(0.4)  # the first holder stopped renewing: its hold ran out
    assert store.take_lease(run_id, second)
    assert not store.renew_lease(run_id, first)
    with pytest.raises(LeaseLost):
        store.update_session(run_id, status="failed", lease=first)  # the old holder's writes are refused
    third = Lease(owner="flow-3@h:3", seconds=30)
    assert store.take_lease(run_id, third, replacing="flow-2@h:2")  # a holder known dead is replaced at once
    store.release_lease(run_id, third.owner)
    session = store.get_session(run_id)
    assert session.owner is None and session.lease_until is None
    store.close()


def test_two_resumes_at_once_one_wins(database_url):
    from autodev.core.session import Lease

    store = open_store(database_url)
    run_id = new_run(store)
    store.close()
    won: list[str] = []

    def resume(n: int) -> None:
        mine = open_store(database_url)
        if mine.take_lease(run_id, Lease(owner=f"flow-{n}@h:{n}", seconds=30)):
            won.append(n)
        mine.close()

    threads = [threading.Thread(target=resume, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(won) == 1


def test_a_run_stored_before_v7_reads_its_advice_in_the_new_layout():
    from autodev.core.session import SessionMetadata

    old = {"phase": "done", "next_actions": ["fix it  ->  make"], "insight": {"recommendations": [], "confidence": 0.5, "evidence": {}}}
    meta = SessionMetadata.model_validate(old)
    assert meta.advice == ["fix it  ->  make"] and meta.next_actions.confidence == 0.5
