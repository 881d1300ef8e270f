"""Turning requirements into a plan: the prompt for a model, and the template's plan when no
model can give one. Pure functions; `tasks/decomposer.py` calls the model."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, Field

from autodev.models import LLMUsage, Plan
from autodev.plan import validate_plan
from autodev.scaffold import TODO_MARKER, Manifest, Requirements, find_todos

DECOMPOSE_PROMPT = f"""You turn a software requirements document into an autodev plan.
The workspace is already scaffolded from a template; its files are listed with the places
marked {TODO_MARKER} that still need code. Steps run in order of `depends_on` inside a
Linux sandbox with Python 3 and pytest and no network. Use steps of kind "agent" (with an
`instruction` for the coding agent, and `files` it may edit) to write code, and steps of kind
"command" (with `run`, a shell command) to check it. Give each check that judges an agent's
work `feedback_to` naming that agent step, so a failure goes back to it with the evidence.
Answer with one JSON object that matches the JSON schema you are given, nothing else."""


class Decomposition(BaseModel):
    """A plan for a requirements document, and how it was made."""

    plan: Plan
    source: Literal["model", "template"]
    template: str
    guidance: str | None = Field(None, description="Manual guidance (markdown) when the template's plan is used.")
    reason: str | None = Field(None, description="Why the model's plan was not used.")
    usage: list[LLMUsage] = Field(default_factory=list)


def decompose_request(requirements: Requirements, manifest: Manifest, files: dict[str, str]) -> str:
    """The user message: requirements, the scaffold's files and TODO places, the default steps."""
    todos = find_todos(files)
    listing = "\n".join(
        f"- {path}" + (f" ({TODO_MARKER} at lines {', '.join(map(str, todos[path]))})" if path in todos else "")
        for path in sorted(files)
    )
    example = json.dumps({"project": requirements.project, "steps": manifest.steps}, indent=1)
    return (
        f"# Requirements ({requirements.source})\n\n{requirements.text.strip()}\n\n"
        f"# Scaffold: template `{manifest.name}` ({manifest.description})\n\n{listing}\n\n"
        f"# The template's default plan (improve on it for these requirements)\n\n{example}\n\n"
        f"Use project name {requirements.project!r}."
    )


def repair_request(previous_error: str) -> str:
    return (
        f"Your answer was rejected: {previous_error}\n"
        "Answer again with one JSON object that matches the schema and fixes exactly that."
    )


def template_plan(requirements: Requirements, manifest: Manifest) -> Plan:
    """The template's default steps as this project's plan."""
    return validate_plan({"project": requirements.project, "steps": manifest.steps}, f"template {manifest.name}")
