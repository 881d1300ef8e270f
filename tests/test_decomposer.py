"""The decomposer on litellm's real HTTP path against a local OpenAI-compatible server:
a valid plan, a plan after one repair, garbage twice -> the template's plan with manual guidance."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from autodev.blocks.llm import LLM
from autodev.core.scaffold import load_manifest, parse_requirements, render_template
from autodev.tasks.decomposer import plan_for

REQUIREMENTS = parse_requirements(Path("docs/weather_bot_requirements.md").read_text(), "weather.md")
MANIFEST = load_manifest("weather-bot")
FILES = render_template(MANIFEST, {})
LOG = logging.getLogger("test-decomposer")

GOOD = {
    "project": "weather-bot",
    "steps": [
        {"id": "implement", "kind": "agent", "instruction": "Fill in the TODOs"},
        {"id": "test", "run": "python -m pytest -q", "depends_on": ["implement"], "feedback_to": "implement"},
    ],
}


def decompose_with(server, **kw):
    return plan_for(REQUIREMENTS, MANIFEST, FILES, server.llm(**kw), LOG)


def test_a_valid_answer_is_the_plan_and_its_cost_is_recorded(model_server):
    model_server.replies.append((200, json.dumps(GOOD)))
    result = decompose_with(model_server)
    assert result.source == "model" and [s.id for s in result.plan.steps] == ["implement", "test"]
    assert result.plan.step("implement").kind == "agent" and result.guidance is None
    assert [u.tokens for u in result.usage] == model_server.tokens_served
    sent = model_server.requests[0]
    assert sent["response_format"]["type"] == "json_schema"  # the plan's JSON schema is asked for
    assert "Weather Bot" in sent["messages"][1]["content"] and "weather_bot/client.py (TODO(autodev)" in sent["messages"][1]["content"]


@pytest.mark.parametrize(
    "first, problem",
    [
        ("{not json", "not a valid Plan"),
        (json.dumps({**GOOD, "steps": [{"id": "a", "run": "x", "depends_on": ["a"]}]}), "cannot depend on itself"),
        (json.dumps({**GOOD, "steps": [{"id": "a", "run": "x", "retrys": 2}]}), "retrys"),
    ],
)
def test_an_invalid_answer_gets_one_repair_that_names_the_problem(model_server, first, problem):
    model_server.replies += [(200, first), (200, json.dumps(GOOD))]
    result = decompose_with(model_server)
    assert result.source == "model" and len(result.usage) == 2
    repair = model_server.requests[1]["messages"][1]["content"]
    assert "Your answer was rejected" in repair and problem in repair


def test_garbage_twice_falls_back_to_the_template_with_manual_guidance(model_server):
    model_server.replies += [(200, "I think you should write some code!"), (200, json.dumps({"steps": []}))]
    result = decompose_with(model_server)
    assert result.source == "template" and [s.id for s in result.plan.steps] == [s["id"] for s in MANIFEST.steps]
    assert "did not make a valid plan" in result.reason
    assert result.guidance.startswith("# Manual guidance: weather-bot") and "- [ ] The city name is sent URL-encoded." in result.guidance
    assert len(result.usage) == 2  # both answers cost tokens


def test_a_model_that_errors_is_not_asked_again(model_server):
    model_server.replies.append((500, "overloaded"))
    result = decompose_with(model_server)
    assert result.source == "template" and len(model_server.requests) == 1
    assert "InternalServerError" in result.reason or "500" in result.reason


def test_a_model_that_does_not_answer_in_time_falls_back(model_server):
    import time

    model_server.replies.append((200, json.dumps(GOOD), 3))
    started = time.monotonic()
    result = plan_for(REQUIREMENTS, MANIFEST, FILES, LLM(model="openai/t", api_base=model_server.api_base, api_key="k", timeout_s=1), LOG)
    assert result.source == "template" and "Timeout" in result.reason
    assert time.monotonic() - started < 3


def test_no_model_means_the_template_plan():
    result = plan_for(REQUIREMENTS, MANIFEST, FILES, None, LOG)
    assert result.source == "template" and "AUTODEV_LLM_MODEL is unset" in result.reason and not result.usage


INVENTORY = parse_requirements(
    "# Inventory tracker\n\nKeep count of what is on the shelves.\n\n- add items by name and count\n"
    "- remove items; removing more than there is raises an error\n",
    "inventory.md",
)


def test_requirements_no_template_matches_get_the_generic_test_first_plan_without_a_model():
    from autodev.tasks.decomposer import decompose_requirements

    made = decompose_requirements(INVENTORY, None, None, LOG)
    assert made.source == "template" and made.template == "python-package"
    assert "no template is named" in made.template_reason
    assert [(s.id, s.expect) for s in made.plan.steps] == [
        ("write-tests", "success"), ("tests-fail-first", "tests-fail"), ("implement", "success"), ("test", "success"),
    ]
    assert made.plan.step("write-tests").files == ["tests/test_inventory_tracker.py"]
    assert "- [ ] remove items; removing more than there is raises an error" in made.guidance
    assert "inventory_tracker/__init__.py" in made.files


def test_the_model_may_pick_a_template_and_says_why(model_server):
    from autodev.tasks.decomposer import decompose_requirements

    model_server.replies.append((200, json.dumps({"template": "word-stats", "why": "it is a word-counting command line tool"})))
    model_server.replies.append((200, json.dumps(GOOD | {"project": "inventory-tracker"})))
    made = decompose_requirements(INVENTORY, None, model_server.llm(), LOG)
    assert made.template == "word-stats" and made.template_reason == "picked by the model: it is a word-counting command line tool"
    assert "word-stats" in model_server.requests[0]["messages"][1]["content"]  # the templates were listed
    assert "python-package" not in model_server.requests[0]["messages"][1]["content"]
    assert len(made.usage) == 2  # the pick and the plan


def test_a_model_that_picks_no_listed_template_leaves_the_generic_one(model_server):
    from autodev.tasks.decomposer import decompose_requirements

    model_server.replies.append((200, json.dumps({"template": "django-site", "why": "a web app"})))
    model_server.replies.append((200, json.dumps(GOOD | {"project": "inventory-tracker"})))
    made = decompose_requirements(INVENTORY, None, model_server.llm(), LOG)
    assert made.template == "python-package" and "the model picked no other: a web app" in made.template_reason
