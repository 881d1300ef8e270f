"""The nightly experiments: a suite of small projects developed from their requirements, measured.

Each experiment is a development run (src/autodev/flows/develop.py) in a fresh workspace. With a model
configured (AUTODEV_LLM_MODEL or an LLM block) the model does the work; without one, each
experiment's stored responses are replayed by a local server, so the suite runs offline and
measures the orchestrator itself. The night's figures land as a report artifact;
`autodev report` renders the same report from every recorded run.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.states import Failed
from pydantic import BaseModel, Field

from autodev.blocks.git_state import commit_all
from autodev.core.errors import RunFailed
from autodev.core.evaluation import evaluate, render_report
from autodev.core.models import RunReport, utcnow
from autodev.flows.develop import develop
from autodev.flows.runtime import runtime


class Experiment(BaseModel):
    requirements: str = Field(description="Requirements document (markdown), relative to the project directory.")
    replay: str | None = Field(None, description="Stored model responses, used when no model is configured.")
    repository: str | None = Field(
        None, description="A folder to work on as an existing repository: copied into a new git repository, committed."
    )


SUITE = [
    Experiment(requirements="docs/weather_bot_requirements.md", replay="examples/replay/weather-bot.yaml"),
    Experiment(requirements="docs/word_stats_requirements.md", replay="examples/replay/word-stats.yaml"),
    Experiment(requirements="docs/unit_convert_requirements.md", replay="examples/replay/unit-convert.yaml"),
    Experiment(requirements="examples/repos/shelf-tasks.md", replay="examples/replay/shelf.yaml", repository="examples/repos/shelf"),
]


@flow(name="nightly-experiments", persist_result=False)
def nightly_experiments(
    experiments: list[Experiment] = SUITE,
    workspace_root: str | None = None,
    sandbox_block: str | None = None,
    state_store_block: str | None = None,
    llm_block: str | None = None,
):
    """Develop every experiment from its requirements, one after another, and report the night."""
    logger = get_run_logger()
    settings = runtime().settings
    use_model = bool(llm_block or settings.llm_model)
    night = Path(workspace_root or settings.workspace_root) / f"nightly-{datetime.now():%Y%m%d-%H%M%S}"
    reports: list[RunReport] = []
    problems: list[str] = []
    for experiment in experiments:
        name = Path(experiment.requirements).stem.removesuffix("_requirements")
        workspace = night / name
        if experiment.repository:  # the user's repository, as a user has it: committed
            shutil.copytree(experiment.repository, workspace)
            commit_all(workspace, f"{name}: the repository as it was")
        state = develop(
            requirements=experiment.requirements,
            workspace=str(workspace),
            confirm=False,  # nobody is awake to confirm: a template's plan runs as it is
            replay=None if use_model else experiment.replay,
            sandbox_block=sandbox_block,
            state_store_block=state_store_block,
            llm_block=llm_block,
            return_state=True,
        )
        outcome = state.result(raise_on_failure=False)
        report = outcome.report if isinstance(outcome, RunFailed) else outcome
        if isinstance(report, RunReport):
            reports.append(report)
            logger.info("%s: %s, success rate %.0f%%", name, report.status, 100 * report.success_rate)
            if report.status != "succeeded":
                problems.append(f"{name} {report.status}")
        else:
            problems.append(f"{name} did not run: {outcome}")
            logger.error("%s did not run: %s", name, outcome)
    store = runtime().store(state_store_block)
    try:
        evaluations = []
        for r in reports:
            session = store.sessions.get(r.run_id)
            evaluations.append(evaluate(session, store.attempts.of(r.run_id), store.attempts.states(r.run_id), store.attempts.model_calls(r.run_id)))
    finally:
        store.close()
    if evaluations:
        create_markdown_artifact(
            key="nightly-report", markdown=render_report(evaluations, utcnow()), description="the night's experiments"
        )
    if problems:
        return Failed(message="; ".join(problems))
    return [r.run_id for r in reports]
