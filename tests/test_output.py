"""Output capture: full log file, capped tail, byte count, live lines within a budget; the step
task's log lines."""

import logging

import autodev.tasks.run_command  # noqa: F401 - installs the step tasks' log filters
from autodev.core.output import OutputCapture


def test_tail_is_capped_and_bytes_are_counted(tmp_path):
    log = tmp_path / "logs" / "step.log"
    capture = OutputCapture(tail_bytes=1024, log_path=log)
    for i in range(1000):
        capture.feed(f"line {i:04d}\n".encode())
    capture.close()
    assert capture.total_bytes == 10_000
    assert len(capture.tail.encode()) <= 1024
    assert capture.tail.endswith("line 0999\n")
    assert log.read_bytes().startswith(b"line 0000\n") and log.stat().st_size == 10_000


def test_undecodable_bytes_are_replaced_not_fatal(tmp_path):
    capture = OutputCapture(tail_bytes=1024, log_path=tmp_path / "x.log")
    capture.feed(b"ok \xff\xfe done")
    capture.close()
    assert capture.tail == "ok \ufffd\ufffd done"
    assert (tmp_path / "x.log").read_bytes() == b"ok \xff\xfe done"


def test_live_lines_stop_at_the_budget_and_say_so():
    shown: list[str] = []
    capture = OutputCapture(tail_bytes=1024, on_lines=shown.append, live_bytes=100)
    for i in range(100):
        capture.feed(f"line {i}\n".encode())
    capture.close()
    text = "\n".join(shown)
    assert "line 0" in text and "line 99" not in text
    assert "live log stops here after" in shown[-1]


def test_partial_lines_are_joined_and_the_last_one_is_flushed():
    shown: list[str] = []
    capture = OutputCapture(tail_bytes=1024, on_lines=shown.append)
    capture.feed(b"hel")
    capture.feed(b"lo\nno newline at the end")
    capture.close()
    assert shown == ["hello", "no newline at the end"]


def test_a_step_task_says_how_it_ended_once():
    """The step task's own verdict line says how the command ended; Prefect's "Finished in
    state ..." after it is dropped for step tasks only."""
    task_log = logging.getLogger("prefect.task_runs")

    def record(task_name: str, message: str) -> logging.LogRecord:
        made = task_log.makeRecord("prefect.task_runs", logging.INFO, __file__, 1, message, (), None)
        made.task_name = task_name  # what Prefect's task-run logger adds to every record
        return made

    assert not task_log.filter(record("run_command", "Finished in state Completed()"))
    assert not task_log.filter(record("run_agent", "Finished in state Failed('failed: exit code 1')"))
    assert task_log.filter(record("run_command", "succeeded: exit code 0 after 0.04s, 0 bytes of output"))
    assert task_log.filter(record("insights", "Finished in state Completed()"))
