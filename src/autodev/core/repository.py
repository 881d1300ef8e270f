"""Work on a repository that exists: what the decomposer is told of it, the tasks a requirements
document lists, and the plan when no model makes one. Pure functions over what
`src/autodev/blocks/git_state.py` reads.

The work happens on a new branch in a clone of its own, so the user's checkout is never touched; a
baseline run of the tests comes before any change, and a check that has the baseline does not
blame the agent for tests that already failed there (`src/autodev/core/engine/judge.py`).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from autodev.core.errors import BadInput
from autodev.core.models import Plan
from autodev.core.plan import validate_plan
from autodev.core.scaffold import Requirements

FILE_LIMIT = 300  # tracked files listed for the model; the rest are counted


class Backlog(BaseModel):
    """What earlier runs on the same document and repository left (`core/backlog.py`)."""

    previous_run: str | None = None  # the run this one goes on from
    start: str | None = None  # the branch to start from (None: the checkout's HEAD)
    done: list[str] = Field(default_factory=list)  # the tasks (titles) done on it
    notes: dict[str, str] = Field(default_factory=dict)  # a person's note on a task left open


class RepoMap(BaseModel):
    """What the decomposer is told of an existing repository."""

    files: list[str]  # tracked files, at most FILE_LIMIT
    file_count: int
    readme: str = ""  # the head of the README
    language: str = "unknown"
    test_command: str | None = None
    left_out: list[str] = Field(default_factory=list)  # uncommitted changes the branch does not have
    backlog: Backlog = Field(default_factory=Backlog)


class BranchChanges(BaseModel):
    commits: list[str] = Field(default_factory=list)  # "sha subject", oldest first
    diff_stat: str = ""


class Task(BaseModel):
    """One task of a requirements document: a `- [ ]` item or a `##` section."""

    title: str
    text: str
    after: list[int] = Field(default_factory=list)  # the tasks (numbered from 1) it waits for: "after task 2", "depends on #1"


# "after task 2", "after #1 and #3", "depends on task 1, 2": the numbers of the tasks a task waits for.
ORDER = re.compile(r"\b(?:after|depends on)\s+((?:task\s+|#)\d+(?:\s*(?:,|and)\s*(?:task\s+|#)?\d+)*)", re.I)


class Detected(BaseModel):
    language: str = "unknown"
    test_command: str | None = None


def detect(files: list[str], contents: dict[str, str]) -> Detected:
    """The language and the test command of a repository, from its tracked files and the few
    files that tell (package.json, Makefile)."""
    names = {f.rsplit("/", 1)[-1] for f in files}
    makefile = contents.get("Makefile", "")
    if re.search(r"^test\s*:", makefile, re.M):
        make_test = "make test"
    else:
        make_test = None
    if {"pyproject.toml", "setup.py", "setup.cfg"} & names or any(f.endswith(".py") for f in files):
        python_tests = any(re.search(r"(^|/)(test_[^/]*|[^/]*_test)\.py$|(^|/)tests?/", f) for f in files)
        return Detected(language="python", test_command=make_test or ("python -m pytest -q -p no:cacheprovider" if python_tests else None))
    if "package.json" in names:
        return Detected(language="javascript", test_command=make_test or ("npm test" if '"test"' in contents.get("package.json", "") else None))
    if "go.mod" in names:
        return Detected(language="go", test_command=make_test or "go test ./...")
    if "Cargo.toml" in names:
        return Detected(language="rust", test_command=make_test or "cargo test")
    return Detected(test_command=make_test)


def tasks_of(requirements: Requirements) -> list[Task]:
    """The tasks a document lists: its `- [ ]` items, else its `##` sections, else itself; each
    with the tasks it says it comes after. BadInput for an order that names no task of the list
    or goes round in a cycle."""
    text = requirements.text
    items = re.findall(r"^\s*[-*] \[ \] (.+(?:\n(?!\s*[-*] \[)[ \t]+\S.*)*)", text, re.M)
    if items:
        found = [Task(title=_title(item), text=" ".join(line.strip() for line in item.splitlines())) for item in items]
    elif sections := re.split(r"^## +", text, flags=re.M)[1:]:
        found = [Task(title=_title(s.splitlines()[0]), text=s.strip()) for s in sections if s.strip()]
    else:
        found = [Task(title=requirements.project, text=text.strip())]
    return _ordered(found, requirements.source)


def _ordered(tasks: list[Task], source: str) -> list[Task]:
    """The tasks with the order their text gives them, checked: every number names a task of the
    list, and no task waits for itself through the others."""
    for n, task in enumerate(tasks, 1):
        task.after = sorted({int(d) for match in ORDER.findall(task.text) for d in re.findall(r"\d+", match)})
        if wrong := [m for m in task.after if not 1 <= m <= len(tasks) or m == n]:
            raise BadInput(f"{source}: task {n} ({task.title!r}) comes after task {wrong[0]}, which is not another task of the list (1-{len(tasks)})")
    for n in range(1, len(tasks) + 1):
        if cycle := _cycle_from(n, tasks, [n]):
            raise BadInput(f"{source}: the tasks' order goes round in a cycle: " + " -> ".join(f"task {m}" for m in cycle)
                           + " (each comes after the next); drop one of these 'after's")  # fmt: skip
    return tasks


def _cycle_from(start: int, tasks: list[Task], path: list[int]) -> list[int] | None:
    """A path of 'after's from `path`'s last task back to `start`, if there is one."""
    for m in tasks[path[-1] - 1].after:
        if m == start:
            return [*path, m]
        if m not in path and (cycle := _cycle_from(start, tasks, [*path, m])):
            return cycle
    return None


def _title(text: str) -> str:
    first = text.strip().splitlines()[0].strip().rstrip(".:")
    return first if len(first) <= 80 else first[:77].rsplit(" ", 1)[0] + "..."


def with_baseline(plan: Plan, test_command: str | None) -> Plan:
    """The plan with a baseline run of the tests before any change: a `baseline` step (`expect:
    any`) that every agent step waits for and that every check running the same tests names."""
    if not test_command:
        return plan
    data = plan.model_dump(exclude_unset=True)
    steps = data["steps"]
    if not any(s.get("expect") == "any" for s in steps):
        steps.insert(0, {"id": "baseline", "run": test_command, "expect": "any"})
    base = next(s["id"] for s in steps if s.get("expect") == "any")
    for step in steps:
        if step.get("kind") == "agent" and base not in step.get("depends_on", []):
            step["depends_on"] = [base, *step.get("depends_on", [])]
        if step.get("run") == test_command and step["id"] != base:
            step.setdefault("baseline", base)
    return validate_plan(data, f"the plan for {plan.project}")


def repository_plan(requirements: Requirements, repo: RepoMap) -> Plan:
    """The plan when no model makes one: the baseline, then for each task an agent step and the
    tests after it (sent back to it when they fail). Tasks are independent unless the document
    orders them ("after task 2"): one that blocks holds back only the tasks after it. Tasks an
    earlier run did (`repo.backlog`) are left out; their numbers stay those of the document."""
    steps: list[dict] = []
    tasks = tasks_of(requirements)
    done = {n for n, task in enumerate(tasks, 1) if task.title in repo.backlog.done}
    for n, task in enumerate(tasks, 1):
        if n in done:
            continue  # done by an earlier run, on the branch this one starts from
        note = repo.backlog.notes.get(task.title)
        agent = {"id": f"task-{n}", "kind": "agent", "task": task.title, "instruction": (
            f"In this repository: {task.text.rstrip('.')}. Do only this task, and keep the tests passing."
            + (f" A person's note on it: {note}" if note else "")
        ), "depends_on": [f"check-{m}" if repo.test_command else f"task-{m}" for m in task.after if m not in done]}
        steps.append(agent)
        if repo.test_command:
            steps.append({"id": f"check-{n}", "run": repo.test_command, "task": task.title, "depends_on": [agent["id"]],
                          "feedback_to": agent["id"]})
    return with_baseline(validate_plan({"project": requirements.project, "steps": steps}, "the repository plan"), repo.test_command)


REPO_PROMPT = """You turn a task document into an autodev plan for a repository that exists.
You are given the tasks, and a map of the repository: its tracked files, the head of its README,
its language and the command that runs its tests. Steps run in order of `depends_on`, inside a
Linux sandbox in the repository's root, with no network. For each task, use an agent step (kind
"agent", an `instruction`, `task` naming the task, and `files` it may edit) and, after it, a
command step that runs the tests with `feedback_to` naming that agent step. Tasks are
independent unless the document says one needs another: do not make one task's steps depend on
another's. Do not scaffold: the code is there. autodev adds a baseline run of the tests before
any change itself. Answer with one JSON object that matches the JSON schema you are given."""


def repo_request(requirements: Requirements, repo: RepoMap) -> str:
    """The user message for a repository: the tasks, the map, the test command."""
    done = repo.backlog.done
    tasks = "\n".join(
        f"{n}. {t.text}" + (" (done already on the branch: plan no steps for it)" if t.title in done else "")
        + (f" (a person's note: {repo.backlog.notes[t.title]})" if t.title in repo.backlog.notes else "")
        for n, t in enumerate(tasks_of(requirements), 1)
    )
    more = f"\n... and {repo.file_count - len(repo.files)} more" if repo.file_count > len(repo.files) else ""
    return (
        f"# Task document ({requirements.source})\n\n{requirements.text.strip()}\n\n# Tasks\n\n{tasks}\n\n"
        f"# Repository\n\nLanguage: {repo.language}. Tests: `{repo.test_command or 'none found'}`.\n\n"
        f"## README (head)\n\n{repo.readme.strip() or '(none)'}\n\n## Tracked files\n\n" + "\n".join(repo.files) + more
        + f"\n\nUse project name {requirements.project!r}."
    )


def repository_guidance(requirements: Requirements, repo: RepoMap, reason: str) -> str:
    """A markdown checklist for a person, when no model made the plan."""
    lines = [
        f"# Manual guidance: {requirements.project}",
        "",
        f"No model made this plan ({reason}): it is one agent step per task, each followed by the tests"
        + (f" (`{repo.test_command}`)" if repo.test_command else " (no test command was found)") + ".",
        "With no coding agent the run stops at each task for you: do the task on the run's branch, then",
        "skip its step (`autodev resume RUN_ID --step task-N --action skip`) and the tests judge it.",
        "",
        "## Tasks",
        "",
        *[f"- [ ] {t.text}" for t in tasks_of(requirements)],
        "",
        f"## The repository ({repo.language}, {repo.file_count} tracked files)",
        "",
        *[f"- `{f}`" for f in repo.files[:20]],
    ]
    if repo.left_out:
        lines += ["", "## Left out (uncommitted in your checkout, not on the run's branch)", "", *[f"- `{f}`" for f in repo.left_out]]
    return "\n".join(lines) + "\n"
