"""Reading and validating plan files. Pure functions: nothing here runs a command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from autodev.core.egress import Egress
from autodev.core.errors import BadInput
from autodev.core.models import Plan


def load_plan(path: str | Path) -> Plan:
    """Read a YAML (or JSON) plan file and validate it, or raise BadInput naming the problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot read plan file {path}: {exc.strerror or exc}") from exc
    return parse_plan(text, source=str(path))


def parse_plan(text: str, source: str = "plan") -> Plan:
    try:
        data = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise BadInput(f"{source}: not valid YAML/JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadInput(f"{source}: a plan is a mapping with 'project' and 'steps', got {type(data).__name__}")
    return validate_plan(data, source)


def validate_plan(data: dict[str, Any], source: str = "plan") -> Plan:
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        raise BadInput(f"{source}: " + "; ".join(_describe(err, data) for err in exc.errors())) from exc
    problems = _graph_problems(plan) + _network_problems(plan)
    if problems:
        raise BadInput(f"{source}: " + "; ".join(problems))
    return plan


def _describe(err: ErrorDetails, data: dict[str, Any]) -> str:
    loc = list(err["loc"])
    where = "top level"
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        steps = data.get("steps") or []
        raw = steps[loc[1]] if loc[1] < len(steps) else None
        step_id = raw.get("id") if isinstance(raw, dict) else None
        where = f"step {step_id!r} (steps[{loc[1]}])" if step_id else f"steps[{loc[1]}]"
        loc = loc[2:]
    field = ".".join(str(part) for part in loc)
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown key {field!r}"
    if err["type"] == "missing":
        return f"{where}: missing required field {field!r}"
    message = err["msg"].removeprefix("Value error, ")
    return f"{where} field {field!r}: {message}" if field else f"{where}: {message}"


def _network_problems(plan: Plan) -> list[str]:
    """A step's own allow-list adds to the plan's: there must be one."""
    if isinstance(plan.network, Egress):
        return []
    return [
        f"step {step.id!r} field 'network': a step's allow-list adds hosts to the plan's, and the plan's `network` is "
        f"{plan.network!r}, not an allow-list: give the plan `network: {{allow: [...]}}`"
        for step in plan.steps if step.network is not None
    ]  # fmt: skip


def _graph_problems(plan: Plan) -> list[str]:
    problems: list[str] = []
    ids = [s.id for s in plan.steps]
    seen: set[str] = set()
    for step_id in ids:
        if step_id in seen:
            problems.append(f"step {step_id!r} field 'id': duplicate step id")
        seen.add(step_id)
    for step in plan.steps:
        for dep in step.depends_on:
            if dep not in seen:
                problems.append(f"step {step.id!r} field 'depends_on': unknown step {dep!r}")
            elif dep == step.id:
                problems.append(f"step {step.id!r} field 'depends_on': a step cannot depend on itself")
    if not problems:
        cycle = find_cycle(plan)
        if cycle:
            problems.append(f"step {cycle[0]!r} field 'depends_on': cycle {' -> '.join(cycle)}")
    if not problems:
        for step in plan.steps:
            if step.feedback_to is not None and step.feedback_to not in upstream_of(plan, step.id):
                problems.append(
                    f"step {step.id!r} field 'feedback_to': {step.feedback_to!r} is not a step this one depends on"
                )
            if step.baseline is not None and step.baseline not in seen:
                problems.append(f"step {step.id!r} field 'baseline': unknown step {step.baseline!r}")
        problems += _test_first_problems(plan) + _merge_problems(plan)
    return problems


def _merge_problems(plan: Plan) -> list[str]:
    """A step that merges a worktree comes after every step of it, and is its only one."""
    problems, merged = [], set()
    for step in (s for s in plan.steps if s.merges is not None):
        lane = [s.id for s in plan.steps if s.worktree == step.merges]
        if not lane:
            problems.append(f"step {step.id!r} field 'merges': no step runs in worktree {step.merges!r}")
        elif missing := [sid for sid in lane if sid not in upstream_of(plan, step.id)]:
            problems.append(f"step {step.id!r} field 'merges': it must come after every step of worktree {step.merges!r} "
                            f"(add {', '.join(missing)} to its depends_on)")  # fmt: skip
        if step.merges in merged:
            problems.append(f"step {step.id!r} field 'merges': worktree {step.merges!r} is merged by another step already")
        merged.add(step.merges)
    return problems


def _test_first_problems(plan: Plan) -> list[str]:
    """A `tests-fail` check sits between the agent step that writes the tests and the one that
    implements the code: an agent step comes before it, and one after it."""
    problems = []
    agents = {s.id for s in plan.steps if s.kind == "agent"}
    for step in plan.steps:
        if step.expect != "tests-fail":
            continue
        if step.kind != "command":
            problems.append(f"step {step.id!r} field 'expect': tests-fail belongs to a command that runs the tests")
        elif not agents & upstream_of(plan, step.id):
            problems.append(f"step {step.id!r} field 'expect': tests-fail needs an agent step before it (the one that writes the tests)")
        elif not any(step.id in upstream_of(plan, a) for a in agents):
            problems.append(f"step {step.id!r} field 'expect': tests-fail needs an agent step after it (the one that implements the code)")
    return problems


def upstream_of(plan: Plan, step_id: str) -> set[str]:
    """Every step `step_id` depends on, directly or through others."""
    found: set[str] = set()
    pending = list(plan.step(step_id).depends_on)
    while pending:
        dep = pending.pop()
        if dep not in found:
            found.add(dep)
            pending.extend(plan.step(dep).depends_on)
    return found


def find_cycle(plan: Plan) -> list[str] | None:
    """A dependency cycle as a list of step ids (first id repeated at the end), or None.

    Iterative depth-first search: a plan may chain thousands of steps.
    """
    deps = {s.id: s.depends_on for s in plan.steps}
    finished: set[str] = set()
    for root in deps:
        if root in finished:
            continue
        path: list[str] = [root]
        on_path = {root}
        pending = [iter(deps[root])]
        while pending:
            dep = next(pending[-1], None)
            if dep is None:
                finished.add(path[-1])
                on_path.discard(path.pop())
                pending.pop()
            elif dep in on_path:
                return path[path.index(dep):] + [dep]
            elif dep not in finished:
                path.append(dep)
                on_path.add(dep)
                pending.append(iter(deps[dep]))
    return None
