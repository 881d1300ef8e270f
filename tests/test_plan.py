"""Plan validation: bad plans are refused with a message naming the step and field."""

import pytest

from autodev.core.errors import BadInput
from autodev.core.plan import load_plan, parse_plan

GOOD = """
project: demo
defaults: {stall_timeout_s: 120, timeout_s: 600, retries: 1}
steps:
  - id: install
    run: python -m pip install -e .
  - id: test
    run: python -m pytest -q
    depends_on: [install]
    stall_timeout_s: 30
"""


def test_a_good_plan_is_read_with_defaults_and_overrides():
    plan = parse_plan(GOOD)
    assert [s.id for s in plan.steps] == ["install", "test"]
    install, test = plan.limits_for(plan.step("install")), plan.limits_for(plan.step("test"))
    assert (install.stall_timeout_s, install.timeout_s, install.retries, install.max_stall_retries) == (120, 600, 1, 1)
    assert (test.stall_timeout_s, test.timeout_s, test.retries) == (30, 600, 1)
    assert plan.network is False and plan.max_parallel == 1


def test_json_plans_are_accepted():
    plan = parse_plan('{"project": "p", "steps": [{"id": "a", "run": "true"}]}')
    assert plan.steps[0].run == "true"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("project: p\nsteps: [ {id: a", "not valid YAML/JSON"),
        ("- just\n- a list", "a plan is a mapping"),
        ("project: p\nstepz: []", "unknown key 'stepz'"),
        ("project: p\nsteps:\n  - {id: a, run: x, dependson: [b]}", "step 'a' (steps[0]): unknown key 'dependson'"),
        ("project: p\nsteps:\n  - {id: a, run: '   '}", "step 'a' (steps[0]) field 'run': command is empty"),
        ("project: p\nsteps:\n  - {id: a}", "step 'a' (steps[0]): missing required field 'run'"),
        ("project: p\nsteps:\n  - {id: a, run: x}\n  - {id: a, run: y}", "step 'a' field 'id': duplicate step id"),
        ("project: p\nsteps:\n  - {id: a, run: x, depends_on: [nope]}", "step 'a' field 'depends_on': unknown step 'nope'"),
        ("project: p\nsteps:\n  - {id: a, run: x, depends_on: [a]}", "cannot depend on itself"),
        (
            "project: p\nsteps:\n  - {id: a, run: x, depends_on: [c]}\n  - {id: b, run: x, depends_on: [a]}\n"
            "  - {id: c, run: x, depends_on: [b]}",
            "cycle a -> c -> b -> a",
        ),
        ("project: p\nsteps: []", "field 'steps'"),
        ("project: p\nsteps:\n  - {id: a, run: x, timeout_s: -1}", "step 'a' (steps[0]) field 'timeout_s'"),
        ("project: p\nsteps:\n  - {id: a, kind: agent}", "step 'a' (steps[0]): an agent step needs `instruction`"),
        ("project: p\nsteps:\n  - {id: a, kind: agent, run: x}", "an agent step has `instruction`, not `run`"),
        ("project: p\nsteps:\n  - {id: a, run: x, instruction: y}", "belong to steps of kind agent"),
        ("project: p\nsteps:\n  - {id: a, kind: robot, run: x}", "step 'a' (steps[0]) field 'kind'"),
        (
            "project: p\nsteps:\n  - {id: a, kind: agent, instruction: y, agent_command: 'codex exec'}",
            "field 'agent_command': needs an {instruction} placeholder",
        ),
        (
            "project: p\nsteps:\n  - {id: a, kind: agent, instruction: y, context: [/etc/passwd]}",
            "step 'a' (steps[0]) field 'context': path '/etc/passwd' would leave the workspace",
        ),
        (
            "project: p\nsteps:\n  - {id: a, kind: agent, instruction: y, files: [../x.py]}",
            "field 'files': path '../x.py' would leave the workspace",
        ),
        (
            "project: p\nsteps:\n  - {id: a, kind: agent, instruction: y, agent_command: 'claude -p \"{instruction}\"'}",
            "leave {instruction} unquoted",
        ),
        (
            "project: p\nsteps:\n  - {id: a, run: x}\n  - {id: t, run: y, feedback_to: a}",
            "step 't' field 'feedback_to': 'a' is not a step this one depends on",
        ),
    ],
)
def test_bad_plans_name_the_problem(text, expected):
    with pytest.raises(BadInput) as info:
        parse_plan(text, source="plan.yaml")
    assert expected in str(info.value)
    assert str(info.value).startswith("plan.yaml: ")


def test_a_long_chain_is_checked_without_recursion_limits():
    steps = "\n".join(f"  - {{id: s{i}, run: 'true', depends_on: [s{i - 1}]}}" for i in range(1, 3000))
    plan = parse_plan("project: p\nsteps:\n  - {id: s0, run: 'true'}\n" + steps)
    assert len(plan.steps) == 3000


def test_a_missing_file_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="cannot read plan file"):
        load_plan(tmp_path / "absent.yaml")


def test_a_test_first_check_sits_between_the_agent_that_writes_tests_and_the_one_that_implements():
    from autodev.core.errors import BadInput
    from autodev.core.plan import parse_plan

    good = """
project: p
steps:
  - {id: write-tests, kind: agent, instruction: write tests}
  - {id: red, run: pytest, expect: tests-fail, depends_on: [write-tests]}
  - {id: implement, kind: agent, instruction: implement, depends_on: [red]}
"""
    assert parse_plan(good).step("red").expect == "tests-fail"
    with pytest.raises(BadInput, match="needs an agent step after it"):
        parse_plan(good.replace("  - {id: implement, kind: agent, instruction: implement, depends_on: [red]}\n", ""))
    with pytest.raises(BadInput, match="needs an agent step before it"):
        parse_plan("project: p\nsteps:\n  - {id: red, run: pytest, expect: tests-fail}\n  - {id: i, kind: agent, instruction: x, depends_on: [red]}\n")
    with pytest.raises(BadInput, match="field 'baseline': unknown step 'nope'"):
        parse_plan("project: p\nsteps:\n  - {id: t, run: pytest, baseline: nope}\n")
