"""Turning requirements into a plan: the prompt for a model, and the template's plan when no
model can give one. Pure functions; `src/autodev/tasks/decomposer.py` calls the model."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, Field

from autodev.core.models import LLMUsage, Plan
from autodev.core.plan import validate_plan
from autodev.core.scaffold import TODO_MARKER, Manifest, Requirements, find_todos, template_steps

DECOMPOSE_PROMPT = f"""You turn a software requirements document into an autodev plan.
The workspace is already scaffolded from a template; its files are listed with the places
marked {TODO_MARKER} that still need code. Steps run in order of `depends_on` inside a
Linux sandbox with Python 3 and pytest and no network. Use steps of kind "agent" (with an
`instruction` for the coding agent, and `files` it may edit) to write code, and steps of kind
"command" (with `run`, a shell command) to check it. Give each check that judges an agent's
work `feedback_to` naming that agent step, so a failure goes back to it with the evidence.
When the workspace holds no tests for what is asked, plan test-first: an agent step writes the
tests from the requirements' acceptance criteria (its `files` name the test files), then a
command step with `"expect": "tests-fail"` runs them and shows they fail, then an agent step
implements the code, then the tests run again with `feedback_to` the implementing step.
Answer with one JSON object that matches the JSON schema you are given, nothing else."""

PICK_PROMPT = """You choose the scaffold of a new software project. You are given its requirements
and a list of templates. Pick a template only if the project is what that template was made
for: a template brings its own tests, and they will judge the work. Otherwise pick none: the
project then starts as an empty Python package and its tests are written from the requirements.
Answer with one JSON object: {"template": a template's name or null, "why": one sentence}."""


class TemplatePick(BaseModel):
    """A model's choice of template for requirements that name none."""

    template: str | None = None
    why: str = Field(min_length=1)


def pick_request(requirements: Requirements, manifests: list[Manifest]) -> str:
    listing = "\n".join(f"- {m.name}: {m.description} (keywords: {', '.join(m.keywords)})" for m in manifests)
    return f"# Requirements ({requirements.source})\n\n{requirements.text.strip()}\n\n# Templates\n\n{listing}\n"


class Decomposition(BaseModel):
    """A plan for a requirements document, and how it was made."""

    plan: Plan
    source: Literal["model", "template"]
    template: str
    template_reason: str = Field("", description="Why this template: named, the generic one, or the model's pick.")
    guidance: str | None = Field(None, description="Manual guidance (markdown) when the template's plan is used.")
    reason: str | None = Field(None, description="Why the model's plan was not used.")
    usage: list[LLMUsage] = Field(default_factory=list)
    files: dict[str, str] = Field(default_factory=dict, exclude=True, description="The scaffold's files, rendered.")


def decompose_request(requirements: Requirements, manifest: Manifest, files: dict[str, str]) -> str:
    """The user message: requirements, the scaffold's files and TODO places, the default steps."""
    todos = find_todos(files)
    listing = "\n".join(
        f"- {path}" + (f" ({TODO_MARKER} at lines {', '.join(map(str, todos[path]))})" if path in todos else "")
        for path in sorted(files)
    )
    steps = template_steps(manifest, requirements.variables, requirements.project)
    example = json.dumps({"project": requirements.project, "steps": steps}, indent=1)
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
    steps = template_steps(manifest, requirements.variables, requirements.project)
    return validate_plan({"project": requirements.project, "steps": steps}, f"template {manifest.name}")
