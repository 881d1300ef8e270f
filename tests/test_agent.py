"""What an agent step asks and which edits it may make (plain functions)."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from autodev.core.agent import AgentEdits, agent_cli_command, agent_request, check_edits, failure_evidence
from autodev.core.errors import BadInput


def edits(*paths: str) -> AgentEdits:
    return AgentEdits(edits=[{"path": p, "content": "x = 1\n"} for p in paths], summary="s")


def test_edits_to_allowed_files_pass():
    assert check_edits(edits("pkg/a.py", "./pkg/b.py"), {"pkg/a.py", "pkg/b.py"}) == {"pkg/a.py": "x = 1\n", "pkg/b.py": "x = 1\n"}


@pytest.mark.parametrize(
    "path, message",
    [
        ("tests/test_a.py", "may edit only pkg/a.py"),  # an agent does not rewrite the tests that judge it
        ("../../etc/passwd", "would leave the workspace"),
        ("/etc/passwd", "would leave the workspace"),
        (".git/config", "would leave the workspace"),
    ],
)
def test_edits_elsewhere_are_refused(path, message):
    with pytest.raises(BadInput, match=message.replace(".", r"\.")):
        check_edits(edits("pkg/a.py", path), {"pkg/a.py"})


def test_the_cli_gets_the_instruction_quoted_with_the_evidence_after_it():
    evidence = failure_evidence("test", "pytest -q", "failed", 1, "E  assert 'it''s' == \"x\"; $(rm -rf /)\n1 failed")
    command = agent_cli_command("my-agent --message {instruction} --yes", "Fix `it`", evidence)
    argv = shlex.split(command)
    assert argv[0] == "my-agent" and argv[-1] == "--yes" and len(argv) == 4
    assert argv[2].startswith("Fix `it`\n\nYour previous attempt did not pass.") and "$(rm -rf /)" in argv[2]
    shown = subprocess.run(["sh", "-c", command.replace("my-agent", "printf '%s' ", 1)], capture_output=True, text=True).stdout
    assert "$(rm -rf /)" in shown  # the shell passed it on as text, never ran it


def test_the_request_shows_the_evidence_only_on_a_retry():
    first = agent_request("Do it", {"a.py": "# TODO(autodev)"}, {"README.md": "read me"}, None)
    again = agent_request("Do it", {"a.py": "# TODO(autodev)"}, {}, "Check `test` failed")
    assert "Evidence from the failed check" not in first and "## README.md" in first and "## a.py" in first
    assert "# Evidence from the failed check" in again and "Check `test` failed" in again


def test_the_agents_commit_holds_only_its_own_files(tmp_path):
    from autodev.core.agent import apply_edits_command

    def git(*args):
        return subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True, check=True).stdout

    git("init", "-q")
    (tmp_path / "mine.txt").write_text("a person's work\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "my mod.py").write_text("# TODO(autodev)\n")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    (tmp_path / "mine.txt").write_text("a person's work, staged\n")
    git("add", "mine.txt")
    stage = tmp_path / ".autodev" / "agent" / "s.1" / "pkg"
    stage.mkdir(parents=True)
    (stage / "my mod.py").write_text("x = 1\n")
    command = apply_edits_command(".autodev/agent/s.1", ["pkg/my mod.py"], "s: it's \"done\"\nsecond line")
    shown = subprocess.run(["sh", "-c", command], cwd=tmp_path, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert git("show", "--name-only", "--format=%s", "HEAD").split("\n")[:3] == ["s: it's \"done\" second line", "", "pkg/my mod.py"]
    assert git("diff", "--cached", "--name-only").strip() == "mine.txt"  # still staged, not swept into the commit
