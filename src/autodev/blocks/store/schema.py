"""The state store's schema, as versioned migrations (`src/autodev/blocks/store/database.py` applies them)."""

# Each migration runs once, in order, inside one transaction; {json}, {ts} and {serial_pk}
# are the backend's spelling of a JSON document, a timestamp and an auto-increment key.
MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE agent_sessions (
                run_id TEXT PRIMARY KEY,
                project TEXT NOT NULL,
                status TEXT NOT NULL,
                workspace TEXT NOT NULL,
                flow_run_id TEXT,
                plan {json} NOT NULL,
                metadata {json} NOT NULL,
                created_at {ts} NOT NULL,
                updated_at {ts} NOT NULL)""",
            "CREATE INDEX agent_sessions_updated ON agent_sessions (updated_at)",
            """CREATE TABLE step_results (
                id {serial_pk},
                run_id TEXT NOT NULL REFERENCES agent_sessions (run_id),
                step_id TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                command TEXT NOT NULL,
                status TEXT NOT NULL,
                exit_code INTEGER,
                exit_reason TEXT,
                started_at {ts} NOT NULL,
                finished_at {ts} NOT NULL,
                duration_s DOUBLE PRECISION NOT NULL,
                output_bytes BIGINT NOT NULL,
                output_tail TEXT NOT NULL,
                log_path TEXT,
                UNIQUE (run_id, step_id, attempt))""",
            "CREATE INDEX step_results_finished ON step_results (finished_at)",
        ],
    ),
    (
        2,
        [
            # The final status of each step (succeeded, failed, skipped, blocked, ...), one row
            # per step, so a report never has to re-derive it from the attempts.
            """CREATE TABLE step_states (
                run_id TEXT NOT NULL REFERENCES agent_sessions (run_id),
                step_id TEXT NOT NULL,
                status TEXT NOT NULL,
                updated_at {ts} NOT NULL,
                PRIMARY KEY (run_id, step_id))""",
        ],
    ),
    (
        3,
        [
            # The watchdog and the metrics exporter look for sessions by status. (Attempt
            # totals need no index of their own: they are read by primary key, newest rows only.)
            "CREATE INDEX agent_sessions_status ON agent_sessions (status, updated_at)",
        ],
    ),
    (
        4,
        [
            # Every model call a run made: what it cost, for reports and metrics.
            """CREATE TABLE llm_usage (
                id {serial_pk},
                run_id TEXT NOT NULL REFERENCES agent_sessions (run_id),
                purpose TEXT NOT NULL,
                model TEXT NOT NULL,
                tokens INTEGER NOT NULL,
                cost_usd DOUBLE PRECISION NOT NULL,
                ts {ts} NOT NULL)""",
        ],
    ),
    (5, ["ALTER TABLE step_results ADD COLUMN breaker_tripped INTEGER NOT NULL DEFAULT 0"]),
    (
        6,
        [
            # Who runs the session now (a flow run id) and until when that holds unless renewed:
            # every heartbeat renews it, so an orchestrator that died lets it run out, and two
            # processes never continue one run at once.
            "ALTER TABLE agent_sessions ADD COLUMN owner TEXT",
            "ALTER TABLE agent_sessions ADD COLUMN lease_until {ts}",
        ],
    ),
    # What an agent CLI's event stream reported for the attempt (autodev.core.commands.AgentReport, JSON).
    (7, ["ALTER TABLE step_results ADD COLUMN agent TEXT"]),
    (
        8,
        [
            # The plan in a table of its own: SQLite rewrites a whole row on every update, and a
            # session's row is updated at every step; with a 10,000-step plan (3.8 MB) in it,
            # each update took 25 ms.
            """CREATE TABLE session_plans (
                run_id TEXT PRIMARY KEY REFERENCES agent_sessions (run_id),
                plan {json} NOT NULL)""",
            "INSERT INTO session_plans (run_id, plan) SELECT run_id, plan FROM agent_sessions",
            "ALTER TABLE agent_sessions DROP COLUMN plan",
        ],
    ),
    # The provider's limit that stopped an agent's attempt (autodev.core.limits.LimitHit, JSON).
    (9, ["ALTER TABLE step_results ADD COLUMN limit_hit TEXT"]),
    # The hosts the allow-list's proxy refused an attempt (a JSON list).
    (10, ["ALTER TABLE step_results ADD COLUMN refused TEXT"]),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]
