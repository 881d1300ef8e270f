"""Work on a repository that exists, the pure part: what it is, its tasks, the plan no model makes."""

from __future__ import annotations

import pytest

from autodev.core.errors import BadInput
from autodev.core.plan import parse_plan
from autodev.core.repository import RepoMap, detect, repository_plan, tasks_of, with_baseline
from autodev.core.scaffold import parse_requirements


def test_the_language_and_the_test_command_come_from_the_files():
    assert detect(["pyproject.toml", "app/core.py", "tests/test_core.py"], {}).test_command.startswith("python -m pytest")
    assert detect(["package.json", "src/index.js"], {"package.json": '{"scripts": {"test": "vitest"}}'}).test_command == "npm test"
    assert detect(["go.mod", "main.go"], {}).model_dump() == {"language": "go", "test_command": "go test ./..."}
    assert detect(["Cargo.toml", "src/lib.rs"], {}).test_command == "cargo test"
    assert detect(["Makefile", "main.c"], {"Makefile": "all:\n\tcc main.c\ntest:\n\t./run-tests\n"}).test_command == "make test"
    assert detect(["notes.txt"], {}).test_command is None


def test_a_task_list_is_its_checkbox_items_else_its_sections():
    items = parse_requirements("# Work\n\n- [ ] fix the parser\n  when it sees tabs\n- [ ] add a --quiet flag\n- not a task\n")
    assert [t.text for t in tasks_of(items)] == ["fix the parser when it sees tabs", "add a --quiet flag"]
    sections = parse_requirements("# Work\n\n## Faster startup\nCache the index.\n\n## Docs\nWrite the guide.\n")
    assert [t.title for t in tasks_of(sections)] == ["Faster startup", "Docs"]
    assert [t.title for t in tasks_of(parse_requirements("# Just one thing\n\nDo it.\n"))] == ["just-one-thing"]


def test_without_a_model_each_task_is_an_agent_step_and_its_check_after_a_baseline():
    wanted = parse_requirements("---\nproject: p\n---\n# Work\n\n- [ ] fix the parser\n- [ ] add a --quiet flag\n")
    plan = repository_plan(wanted, RepoMap(files=["app.py"], file_count=1, language="python", test_command="pytest -q"))
    assert [(s.id, s.expect, s.depends_on, s.baseline) for s in plan.steps] == [
        ("baseline", "any", [], None),
        ("task-1", "success", ["baseline"], None),
        ("check-1", "success", ["task-1"], "baseline"),
        ("task-2", "success", ["baseline"], None),  # independent of task 1: a block there does not hold it
        ("check-2", "success", ["task-2"], "baseline"),
    ]
    assert plan.step("check-2").feedback_to == "task-2" and plan.step("task-2").task == "add a --quiet flag"


def test_tasks_the_document_orders_wait_for_the_tasks_before_them():
    wanted = parse_requirements(
        "# Work\n\n- [ ] add a schema\n- [ ] migrate the data, after task 1\n- [ ] document both (depends on #1 and #2)\n- [ ] fix typos\n"
    )
    assert [t.after for t in tasks_of(wanted)] == [[], [1], [1, 2], []]
    plan = repository_plan(wanted, RepoMap(files=["app.py"], file_count=1, test_command="pytest -q"))
    assert plan.step("task-2").depends_on == ["baseline", "check-1"]  # after task 1's tests passed
    assert plan.step("task-3").depends_on == ["baseline", "check-1", "check-2"]
    assert plan.step("task-4").depends_on == ["baseline"]  # unordered: runs whatever the others do


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ("- [ ] a, after task 2\n- [ ] b, after task 3\n- [ ] c, after #1\n",
         "the tasks' order goes round in a cycle: task 1 -> task 2 -> task 3 -> task 1"),
        ("- [ ] a\n- [ ] b, after task 7\n", "task 2 ('b, after task 7') comes after task 7, which is not another task of the list (1-2)"),
        ("- [ ] a, after task 1\n- [ ] b\n", "comes after task 1, which is not another task"),
    ],
)  # fmt: skip
def test_an_order_that_cannot_be_kept_is_refused_naming_the_tasks(tasks, message):
    with pytest.raises(BadInput, match="^TASKS.md: ") as refused:
        tasks_of(parse_requirements(f"# Work\n\n{tasks}", source="TASKS.md"))
    assert message in str(refused.value)


def test_a_models_plan_gets_the_baseline_before_any_change():
    plan = parse_plan("project: p\nsteps:\n  - {id: edit, kind: agent, instruction: x}\n  - {id: t, run: 'pytest -q', depends_on: [edit]}\n")
    based = with_baseline(plan, "pytest -q")
    assert based.steps[0].id == "baseline" and based.step("edit").depends_on == ["baseline"]
    assert based.step("t").baseline == "baseline"
    assert with_baseline(plan, None) == plan  # no tests found: nothing to compare with
