"""The state store on both backends: schema, the run's one write, results, leases, runs written at once."""

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

from autodev.blocks.store import SCHEMA_VERSION, LeaseLost, StateStore
from autodev.core.commands import CommandResult, StepAttempt
from autodev.core.models import utcnow
from autodev.core.plan import parse_plan
from autodev.core.session import LastCommandResult, Lease, QueueEntry, RunWrite, SessionMetadata

pytestmark = pytest.mark.postgres
PLAN = parse_plan("project: p\nsteps:\n  - {id: a, run: 'echo a'}\n  - {id: b, run: 'exit 1'}")


def open_store(url: str):
    return StateStore(database_url=url).connect()


def new_run(store) -> str:
    run_id = uuid.uuid4().hex
    store.sessions.create(run_id, PLAN, "/tmp/ws", flow_run_id=run_id)
    return run_id


def test_migrations_are_versioned_and_idempotent(database_url):
    store = open_store(database_url)
    assert store.db.schema_version() == SCHEMA_VERSION
    assert store.db.migrate() == SCHEMA_VERSION  # a second run changes nothing
    store.close()
    again = open_store(database_url)
    assert again.db.schema_version() == SCHEMA_VERSION
    again.close()


def test_the_runs_document_is_written_whole_and_its_history_capped(database_url):
    store = open_store(database_url)
    run_id = new_run(store)
    t0, doc = utcnow(), SessionMetadata()
    for i in range(25):
        doc.record_result(LastCommandResult(text=f"out {i}", exit_code=i % 3, ts=t0 + timedelta(seconds=i), step_id="a"))
        store.write(RunWrite(run_id=run_id, metadata=doc))
    session = store.sessions.get(run_id)
    meta = session.metadata
    assert [h.text for h in meta.command_history] == [f"out {i}" for i in range(5, 25)]
    assert meta.last_command_result.text == "out 24" and meta.last_command_result.exit_code == 24 % 3
    assert session.plan == PLAN and session.status == "running"
    store.write(RunWrite(run_id=run_id, status="failed"))  # no document: the stored one stays
    failed = store.sessions.get(run_id)
    assert failed.status == "failed" and failed.metadata == meta
    assert store.sessions.latest().run_id == run_id
    with pytest.raises(KeyError):
        store.write(RunWrite(run_id="no-such-run", status="failed"))
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
        store.write(RunWrite(run_id=run_id, attempts=[StepAttempt(run_id=run_id, step_id="a", attempt=attempt, command="echo a", result=result)]))
    attempts = store.attempts.of(run_id)
    assert [(a.attempt, a.result.exit_code) for a in attempts] == [(1, 1), (2, 0)]
    assert attempts[0].result.duration_s == pytest.approx(1.5)
    assert attempts[1].result.output_tail == "é\ufffd\n"
    store.close()


def test_an_attempt_and_what_it_settles_are_written_together_and_once(database_url):
    store = open_store(database_url)
    run_id = new_run(store)
    now = utcnow()
    failed = CommandResult(status="failed", exit_code=1, started_at=now, finished_at=now)
    attempt = StepAttempt(run_id=run_id, step_id="a", attempt=1, command="echo a", result=failed)
    doc = SessionMetadata(phase="a failed")
    change = RunWrite(run_id=run_id, metadata=doc, attempts=[attempt], step_states={"a": "failed", "b": "skipped"})
    store.write(change)
    store.write(change)  # tried again after its commit was acknowledged too late: nothing twice
    assert store.attempts.states(run_id) == {"a": "failed", "b": "skipped"} and len(store.attempts.of(run_id)) == 1
    # A state the write cannot store (NOT NULL) undoes the whole write: never one part without the others.
    broken = RunWrite.model_construct(
        run_id=run_id, metadata=SessionMetadata(phase="lost"), status=None, plan=None, flow_run_id=None,
        attempts=[attempt.model_copy(update={"attempt": 2})], step_states={"a": None}, model_calls=[],
    )
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.NotNullViolation)):
        store.write(broken)
    assert [a.attempt for a in store.attempts.of(run_id)] == [1]
    assert store.attempts.states(run_id) == {"a": "failed", "b": "skipped"}
    assert store.sessions.get(run_id).metadata.phase == "a failed"
    store.close()


def test_unknown_exit_code_is_stored_as_null(database_url):
    store = open_store(database_url)
    run_id = new_run(store)
    now = utcnow()
    result = CommandResult(status="failed", exit_code=None, exit_reason="engine lost", started_at=now, finished_at=now)
    store.write(RunWrite(run_id=run_id, attempts=[StepAttempt(run_id=run_id, step_id="a", attempt=1, command="x", result=result)]))
    (stored,) = store.attempts.of(run_id)
    assert stored.result.exit_code is None and stored.result.exit_reason == "engine lost"
    store.close()


def _write_a_run(url: str, writer: int, steps: int) -> None:
    """One orchestrator's writes: a run of its own, one write per step, as the recorder makes them."""
    store = open_store(url)
    run_id, lease = f"run-{writer}", Lease(owner=f"flow-{writer}@h:{writer}", seconds=60)
    store.sessions.create(run_id, PLAN, "/tmp/ws", run_id, lease=lease)
    doc = SessionMetadata()
    for i in range(steps):
        now = utcnow()
        doc.queue = [QueueEntry(queue_id=f"{writer}-{i}", step_id="a", attempt=i + 1, dispatched_at=now)]
        result = CommandResult(status="succeeded", exit_code=0, started_at=now, finished_at=now, output_tail=f"{i}\n")
        attempt = StepAttempt(run_id=run_id, step_id="a", attempt=i + 1, command="echo a", result=result)
        store.write(RunWrite(run_id=run_id, metadata=doc, attempts=[attempt], step_states={"a": "succeeded"}), lease)
    store.close()


def test_runs_written_at_once_from_several_processes_lose_nothing(database_url):
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_write_a_run, args=(database_url, w, 25)) for w in range(4)]
    for p in writers:
        p.start()
    threads = [threading.Thread(target=_write_a_run, args=(database_url, 10 + t, 25)) for t in range(2)]
    for t in threads:
        t.start()
    for p in writers:
        p.join(120)
        assert p.exitcode == 0
    for t in threads:
        t.join(120)
    store = open_store(database_url)
    for writer in (0, 1, 2, 3, 10, 11):
        run_id = f"run-{writer}"
        assert [a.attempt for a in store.attempts.of(run_id)] == list(range(1, 26))
        assert store.sessions.get(run_id).metadata.queue[0].queue_id == f"{writer}-24"  # its last write
    store.close()


def test_password_never_shown_and_unreachable_database_is_an_environment_problem():
    from autodev.core.errors import EnvironmentProblem

    with pytest.raises(EnvironmentProblem) as info:
        open_store("postgresql://me:s3cret@127.0.0.1:1/none")
    assert "s3cret" not in str(info.value)
    assert "unreachable" in str(info.value) and "AUTODEV_DATABASE_URL" in str(info.value)


def test_an_old_schema_is_upgraded_in_place_keeping_its_data(database_url, monkeypatch):
    import autodev.blocks.store.database as database

    monkeypatch.setattr(database, "MIGRATIONS", database.MIGRATIONS[:1])
    old = open_store(database_url).db
    assert old.schema_version() == 1
    run_id = uuid.uuid4().hex
    with old.transaction() as cur:  # a session and an attempt written by a version-1 autodev
        old.execute(
            cur, (
                "INSERT INTO agent_sessions (run_id, project, status, workspace, flow_run_id, plan, metadata, created_at, "
                "updated_at) VALUES ({p}, 'p', 'failed', '/tmp/ws', NULL, CAST({p} AS {json}), CAST({p} AS {json}), {p}, {p})"
            ),
            (run_id, json.dumps(PLAN.model_dump(mode="json")), "{}", old.ts(utcnow()), old.ts(utcnow())),
        )
        old.execute(
            cur, (
                "INSERT INTO step_results (run_id, step_id, attempt, command, status, exit_code, started_at, "
                "finished_at, duration_s, output_bytes, output_tail) VALUES ({p}, 'a', 1, 'echo a', 'failed', 1, {p}, {p}, 0.5, 2, {p})"
            ),
            (run_id, old.ts(utcnow()), old.ts(utcnow()), "x\n"),
        )
    old.close()
    monkeypatch.undo()

    upgraded = open_store(database_url)
    assert upgraded.db.schema_version() == SCHEMA_VERSION
    (attempt,) = upgraded.attempts.of(run_id)
    assert attempt.result.output_tail == "x\n" and attempt.breaker_tripped is False
    session = upgraded.sessions.get(run_id)
    assert session.plan == PLAN and session.owner is None and session.lease_until is None
    upgraded.close()


def test_one_process_at_a_time_holds_a_run_and_a_dead_ones_hold_runs_out(database_url):
    store = open_store(database_url)
    run_id = uuid.uuid4().hex
    first, second = Lease(owner="flow-1@h:1", seconds=0.3), Lease(owner="flow-2@h:2", seconds=30)
    store.sessions.create(run_id, PLAN, "/tmp/ws", run_id, lease=first)
    assert not store.leases.take(run_id, second)  # the first holder is alive
    with pytest.raises(LeaseLost):
        store.write(RunWrite(run_id=run_id, status="running"), second)
    assert store.leases.renew(run_id, first) and store.sessions.get(run_id).owner == "flow-1@h:1"
    time.sleep(0.4)  # the first holder stopped renewing: its hold ran out
    assert store.leases.take(run_id, second)
    assert not store.leases.renew(run_id, first)
    with pytest.raises(LeaseLost):
        store.write(RunWrite(run_id=run_id, status="failed"), first)  # the old holder's writes are refused
    third = Lease(owner="flow-3@h:3", seconds=30)
    assert store.leases.take(run_id, third, replacing="flow-2@h:2")  # a holder known dead is replaced at once
    store.leases.release(run_id, third.owner)
    session = store.sessions.get(run_id)
    assert session.owner is None and session.lease_until is None
    store.close()


def test_two_resumes_at_once_one_wins(database_url):
    store = open_store(database_url)
    run_id = new_run(store)
    store.close()
    won: list[str] = []

    def resume(n: int) -> None:
        mine = open_store(database_url)
        if mine.leases.take(run_id, Lease(owner=f"flow-{n}@h:{n}", seconds=30)):
            won.append(n)
        mine.close()

    threads = [threading.Thread(target=resume, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(won) == 1


def test_a_run_stored_before_v7_reads_its_advice_in_the_new_layout():
    old = {"phase": "done", "next_actions": ["fix it  ->  make"], "insight": {"recommendations": [], "confidence": 0.5, "evidence": {}}}
    meta = SessionMetadata.model_validate(old)
    assert meta.advice == ["fix it  ->  make"] and meta.next_actions.confidence == 0.5
