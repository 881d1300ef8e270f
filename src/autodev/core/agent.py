"""The coding agent's side of an agent step: what it is asked, and which edits it may make.

Pure functions. An agent step runs either an external agent CLI (a command template with
`{instruction}`) or the built-in agent, which asks the model for whole-file edits to the files
holding TODO markers; `src/autodev/tasks/agent.py` applies them inside the sandbox.
"""

from __future__ import annotations

import shlex

import jinja2
from pydantic import BaseModel, Field

from autodev.core.commands import CommandResult
from autodev.core.errors import BadInput
from autodev.core.scaffold import TODO_MARKER, safe_relative_path

AGENT_PROMPT = f"""You are a careful coding agent working in a Python project.
Replace every {TODO_MARKER} marker in the files you may edit with working code that meets the
instruction and the requirements; keep everything else as it is. Do not edit tests, unless the
instruction asks you to write them (then write only the tests).
Answer with one JSON object matching the schema: `edits` (each the complete new content of
one file you may edit) and a one-line `summary` of what you did."""

AGENT_FAILED = "coding agent: "  # starts the exit_reason of an agent attempt that produced no edits
GIT_AUTHOR = "-c user.name=autodev -c user.email=autodev@localhost"

_REQUEST = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False).from_string(
    """# Instruction

{{ instruction }}
{% if evidence %}
# Evidence from the failed check (your previous edits did not pass)

{{ evidence }}
{% endif %}
# Files you may edit
{% for path, text in files.items() %}
## {{ path }}

```
{{ text }}
```
{% endfor %}{% if context %}
# Files to read (do not edit)
{% for path, text in context.items() %}
## {{ path }}

```
{{ text }}
```
{% endfor %}{% endif %}"""
)


class FileEdit(BaseModel):
    path: str = Field(description="Workspace-relative path of a file you may edit.")
    content: str = Field(description="The file's complete new content.")


class AgentEdits(BaseModel):
    edits: list[FileEdit] = Field(min_length=1)
    summary: str


def instruction_with_evidence(instruction: str, evidence: str | None) -> str:
    """The instruction as re-rendered for a retry: the failure evidence follows it."""
    if not evidence:
        return instruction
    return f"{instruction}\n\nYour previous attempt did not pass. Evidence from the failed check:\n{evidence}"


def agent_cli_command(template: str, instruction: str, evidence: str | None) -> str:
    """An external agent CLI's command line: `{instruction}` replaced by the quoted instruction."""
    if "{instruction}" not in template:
        raise BadInput(f"agent_command {template!r} has no {{instruction}} placeholder")
    return template.replace("{instruction}", shlex.quote(instruction_with_evidence(instruction, evidence)))


def resume_instruction(why: str | None, evidence: str | None) -> str:
    """What an agent is told when its session is continued: why its last round did not finish
    (the evidence, if any, is in the session already), else the failed check's evidence (the task
    itself is in the session)."""
    if why or not evidence:
        return f"You were interrupted before you finished: {why}. Go on with the task from where you stopped, and finish it."
    return f"Your edits did not pass a check. Fix them. Evidence from the failed check:\n{evidence}"


def interruption(result: CommandResult) -> str:
    """Why an agent's round did not finish, in the words its next round is told."""
    reason = f" ({result.exit_reason})" if result.exit_reason else ""
    if result.limit is not None:
        return "the usage or rate limit of your model provider stopped you; it has reset now"
    if result.status == "stalled":
        return f"you showed no progress for too long and were stopped{reason}"
    if result.status == "timed_out":
        return f"you ran out of time and were stopped{reason}"
    return f"your command ended with exit code {result.exit_code}{reason}" if result.exit_code is not None else f"you were stopped{reason}"


def agent_request(instruction: str, files: dict[str, str], context: dict[str, str], evidence: str | None) -> str:
    return _REQUEST.render(instruction=instruction, files=files, context=context, evidence=evidence)


def check_edits(edits: AgentEdits, allowed: set[str]) -> dict[str, str]:
    """The edits as {path: content}; BadInput naming the first edit outside what the agent may touch."""
    checked: dict[str, str] = {}
    for edit in edits.edits:
        path = safe_relative_path(edit.path)
        if path not in allowed:
            raise BadInput(f"the agent tried to edit {path!r}; it may edit only {', '.join(sorted(allowed))}")
        checked[path] = edit.content
    return checked


def failure_evidence(step_id: str, command: str, status: str, exit_code: int | None, tail: str, limit: int = 4000) -> str:
    """What a failed check tells the agent step it sends the run back to."""
    code = "unknown" if exit_code is None else exit_code
    return f"Check `{step_id}` (`{command}`) {status} with exit code {code}. The end of its output:\n{tail[-limit:]}"


def apply_edits_command(stage: str, paths: list[str], message: str) -> str:
    """The sandbox command that copies staged edits into place and, in a git workspace, commits
    them (so each round of the agent is one commit, and its stat is what this round changed)."""
    quoted = " ".join(shlex.quote(p) for p in paths)
    # Only the agent's files: whatever else a person staged stays out of the agent's commit,
    # and the project's own commit hooks are not the agent step's business.
    commit = (
        f"git add -- {quoted} && {{ git diff --cached --quiet -- {quoted} && echo 'no changes'"
        f" || {{ git {GIT_AUTHOR} commit --no-verify -q -m {shlex.quote(message)} -- {quoted}"
        f" && git --no-pager show --stat --format='%h %s' HEAD; }}; }}"
    )
    return f"cp -R {shlex.quote(stage)}/. . && if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then {commit}; fi"
