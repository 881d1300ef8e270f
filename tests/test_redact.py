"""Secrets never reach stored output, log files, live logs, events or notifications."""

import pytest

from autodev.core.output import OutputCapture
from autodev.core.redact import Redactor


def test_secret_names_and_url_passwords_are_found():
    r = Redactor.from_env(
        {"API_TOKEN": "tok-123456", "HOME": "/home/me", "DB": "postgresql://app:pw-987654@db/x", "MY_PASSWORD": "short"},
        {"OPENAI_API_KEY": "sk-abcdef123"},
    )
    assert r.text("tok-123456 sk-abcdef123 pw-987654 /home/me short") == "*** *** *** /home/me short"


def test_output_capture_masks_tail_live_lines_and_log_file(tmp_path):
    shown: list[str] = []
    log = tmp_path / "step.log"
    capture = OutputCapture(1024, log, on_lines=shown.append, redactor=Redactor(["hunter2-secret"]))
    capture.feed(b"login with hunter2-sec")  # the secret arrives split over two chunks
    capture.feed(b"ret done\n")
    capture.close()
    assert capture.tail == "login with *** done\n"
    assert shown == ["login with *** done"]
    assert log.read_bytes() == b"login with *** done\n"


@pytest.mark.slow
@pytest.mark.docker
def test_a_run_stores_and_sends_no_secret(prefect_api, docker_engine, tmp_path):
    from tests.helpers import autodev_events, run, store

    _, report = run(
        """
project: secretive
steps:
  - id: leak
    run: 'echo "using $DEPLOY_TOKEN"; echo literal-secret-42 >&2; exit 1'
    env: {DEPLOY_TOKEN: literal-secret-42}
""",
        tmp_path,
    )
    secret = "literal-secret-42"
    step = report.steps[0]
    assert step.output_tail == "using ***\n***\n"
    s = store()
    (attempt,) = s.attempts.of(report.run_id)
    meta = s.sessions.get(report.run_id).metadata
    s.close()
    assert secret not in attempt.command and secret not in meta.model_dump_json()
    assert secret not in (tmp_path / ".autodev" / "logs" / report.run_id / "leak.1.log").read_text()
    events = autodev_events(prefect_api, report.run_id)
    assert events and all(secret not in str(e["payload"]) for e in events)
