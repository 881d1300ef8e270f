"""Plans bigger than Prefect takes as a flow-run parameter (512 KiB) still run: the parameter
holds only what differs from the defaults, and a plan bigger than that goes as a file's path."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from autodev.core.commands import CommandResult
from autodev.core.engine.inputs import AttemptEnded, Begin
from autodev.core.insights import advise
from autodev.core.models import GitState, utcnow
from autodev.core.plan import load_plan, validate_plan
from autodev.flows.plan_flow import PLAN_PARAMETER_BYTES, plan_parameter
from autodev.testing import scripted_engine
from tests.helpers import AUTODEV


def test_a_ten_thousand_step_plan_fits_the_parameter_and_a_bigger_one_goes_by_path(tmp_path):
    steps = [{"id": f"s{i:05d}", "run": "true"} for i in range(10_000)]
    plan = validate_plan({"project": "long", "steps": steps})
    compact = plan_parameter(plan, tmp_path)
    assert isinstance(compact, dict) and len(json.dumps(compact)) <= PLAN_PARAMETER_BYTES
    assert validate_plan(compact) == plan  # nothing lost by leaving the defaults out

    wide = validate_plan({"project": "wide", "steps": [{"id": f"s{i}", "run": "echo " + "x" * 5000} for i in range(100)]})
    path = plan_parameter(wide, tmp_path)
    assert isinstance(path, str) and Path(path).parent == tmp_path.resolve() / ".autodev" / "plans"
    assert load_plan(Path(path)) == wide


def test_the_document_a_run_rewrites_at_every_step_stays_small_on_a_ten_thousand_step_plan():
    # The run's metadata is read, changed and written back at every step: had it grown with
    # the plan (an entry per step), a 10,000-step plan's steps would slow down as it ran.
    plan = validate_plan({"project": "long", "steps": [{"id": f"s{i:05d}", "run": "true"} for i in range(10_000)]})
    engine = scripted_engine(plan)
    first_advice = advise("r", plan, dict.fromkeys(engine.progress.status), {}, [], GitState())
    started = engine.handle(Begin()).started
    while started:
        spec, now = started.pop(0), utcnow()
        result = CommandResult(status="succeeded", exit_code=0, started_at=now, finished_at=now)
        started += engine.handle(AttemptEnded(step_id=spec.step.id, attempt=spec.attempt, result=result)).started
    assert set(engine.progress.status.values()) == {"succeeded"}
    meta = engine.state.doc
    meta.next_actions = first_advice  # the longest advice: every step still to run
    assert first_advice.evidence["steps"]["pending"][-1] == "... and 9980 more"
    assert "10000 step(s) still to run, next s00000" in first_advice.recommendations[0].reason
    assert len(json.dumps(meta.model_dump(mode="json"))) < 10_000


@pytest.mark.docker
def test_a_plan_over_prefects_parameter_limit_runs_through_autodev_exec(prefect_api, docker_engine, tmp_path):
    long_command = "echo done # " + "x" * 60_000  # ten of these: 600 KB, over Prefect's 512 KiB
    plan = {"project": "wide", "steps": [{"id": f"s{i}", "run": long_command} for i in range(10)]}
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan))
    done = subprocess.run([*AUTODEV, "exec", str(plan_file), "--workspace", str(tmp_path / "ws"), "--json"],
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert [s["status"] for s in report["steps"]] == ["succeeded"] * 10
    assert [s["output_tail"] for s in report["steps"]] == ["done\n"] * 10
