"""The real litellm HTTP path against a local OpenAI-compatible server: advice refined, or not."""

from __future__ import annotations

import json
import uuid

import pytest

from autodev.blocks.llm import LLM
from autodev.core.models import GitState, LLMUsage
from autodev.core.plan import parse_plan
from autodev.core.session import LLMCall, RunWrite
from autodev.tasks.insights import compute_insight
from tests.helpers import FakeModelServer

PLAN = parse_plan("project: p\nsteps:\n  - {id: build, run: make}\n  - {id: lint, run: ruff .}\n")
FAILED = {"build": "failed", "lint": "failed"}


def insight_with(server: FakeModelServer, tmp_path):
    llm = server.llm()
    return compute_insight.fn("r", PLAN, FAILED, {"build": 1, "lint": 1}, [], str(tmp_path), None, llm=llm)


def rules_only(tmp_path):
    return compute_insight.fn("r", PLAN, FAILED, {"build": 1, "lint": 1}, [], str(tmp_path), None).insight


def test_a_valid_answer_reorders_and_rewords_and_costs_tokens(model_server, tmp_path):
    model_server.replies.append((200, json.dumps({"order": [1, 0], "actions": ["Fix lint first", "Then fix the build"]})))
    advice = insight_with(model_server, tmp_path)
    insight, usage = advice.insight, advice.usage
    rules = rules_only(tmp_path)
    assert [r.action for r in insight.recommendations] == ["Fix lint first", "Then fix the build"]
    assert [r.command for r in insight.recommendations] == ["ruff .", "make"]  # reasons and commands stay the rules'
    assert insight.confidence == rules.confidence and insight.evidence["llm"] == "reworded by openai/local-test"
    assert usage.tokens == model_server.tokens_served[0] and usage.model == "openai/local-test"
    (request,) = model_server.requests
    assert request["model"] == "local-test" and request["response_format"]["type"] == "json_schema"
    assert "recommendations" in request["messages"][1]["content"]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ((200, "Sure! Here is my advice: fix everything."), "not used"),
        ((200, json.dumps({"order": [0, 0], "actions": ["a", "b"]})), "rejected the answer"),
        ((200, json.dumps({"order": [0], "actions": ["only one"]})), "rejected the answer"),
        ((500, "the model is overloaded"), "not used"),
    ],
)
def test_garbage_or_failure_leaves_the_rules_advice(model_server, tmp_path, reply, expected):
    model_server.replies.append(reply)
    insight = insight_with(model_server, tmp_path).insight
    rules = rules_only(tmp_path)
    assert insight.recommendations == rules.recommendations
    assert insight.confidence == rules.confidence  # never higher for a failed model
    assert insight.evidence["llm"].startswith(expected)


def test_tokens_and_cost_are_recorded_and_exported(tmp_path):
    from autodev.blocks.store import StateStore
    from autodev.cli.exporter import StoreCollector

    store = StateStore(database_url=f"sqlite:///{tmp_path / 's.db'}").connect()
    run_id = uuid.uuid4().hex
    store.sessions.create(run_id, PLAN, "/tmp", None)
    calls = [LLMCall(purpose="insights", model="openai/local-test", tokens=150, cost_usd=0.0),
             LLMCall(purpose="insights", model="openai/local-test", tokens=50, cost_usd=0.002)]  # fmt: skip
    store.write(RunWrite(run_id=run_id, model_calls=calls))
    samples = {s.name: s.value for f in StoreCollector(store).collect() for s in f.samples if "llm" in s.name}
    store.close()
    assert samples == {"orchestrator_llm_tokens_total": 200, "orchestrator_llm_cost_usd_total": 0.002}


def test_no_model_no_call(tmp_path):
    advice = compute_insight.fn("r", PLAN, FAILED, {"build": 1, "lint": 1}, [], str(tmp_path), None)
    insight = advice.insight
    assert advice.usage is None and "llm" not in insight.evidence and GitState() == GitState(**insight.evidence["git"])


@pytest.mark.slow
@pytest.mark.docker
def test_a_run_uses_the_llm_block_named_for_it_and_records_its_cost(prefect_api, docker_engine, model_server, tmp_path):
    from tests.helpers import run, store

    LLM(model="openai/local-test", api_base=model_server.api_base, api_key="test-key", timeout_s=10).save(
        "local-model", overwrite=True
    )
    for _ in range(4):  # every advice computed in the run asks the model once
        model_server.replies.append((200, json.dumps({"order": [0], "actions": ["Reworded by the model"]})))
    _, report = run("project: priced\nsteps:\n  - {id: only, run: 'echo hi'}\n", tmp_path, llm_block="local-model")
    assert report.next_actions == ["Reworded by the model"]
    s = store()
    meta = s.sessions.get(report.run_id).metadata
    totals = s.metrics.llm_totals()
    s.close()
    assert meta.next_actions.evidence["llm"] == "reworded by openai/local-test"
    assert totals == [LLMUsage(model="openai/local-test", tokens=sum(model_server.tokens_served), cost_usd=0.0)]
