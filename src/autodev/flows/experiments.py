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
from prefect.states import Failed, State
from pydantic import BaseModel, Field

from autodev.blocks.git_state import commit_all
from autodev.core.errors import RunFailed
from autodev.core.evaluation import evaluate, render_report
from autodev.core.models import utcnow
from autodev.core.report import RunReport
from autodev.core.session import RunEvaluation
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
    settings = runtime().settings
    use_model = bool(llm_block or settings.llm_model)
    night = Path(workspace_root or settings.workspace_root) / f"nightly-{datetime.now():%Y%m%d-%H%M%S}"
    blocks = dict(sandbox_block=sandbox_block, state_store_block=state_store_block, llm_block=llm_block)
    reports: list[RunReport] = []
    problems: list[str] = []
    for experiment in experiments:
        name = Path(experiment.requirements).stem.removesuffix("_requirements")
        outcome = run_experiment(experiment, night / name, use_model, blocks)
        if isinstance(outcome, RunReport):
            reports.append(outcome)
        problems += note_outcome(name, outcome)
    evaluations = evaluate_runs(reports, state_store_block)
    if evaluations:
        create_markdown_artifact(
            key="nightly-report", markdown=render_report(evaluations, utcnow()), description="the night's experiments"
        )
    if problems:
        return Failed(message="; ".join(problems))
    return [r.run_id for r in reports]


def run_experiment(experiment: Experiment, workspace: Path, use_model: bool, blocks: dict[str, str | None]) -> object:
    """Develop one experiment in `workspace`: the run's report, or what came back instead if it did not run."""
    if experiment.repository:  # the user's repository, as a user has it: committed
        shutil.copytree(experiment.repository, workspace)
        commit_all(workspace, f"{workspace.name}: the repository as it was")
    state: State = develop(  # type: ignore[assignment] # return_state=True: the flow's final state, run here
        requirements=experiment.requirements,
        workspace=str(workspace),
        confirm=False,  # nobody is awake to confirm: a template's plan runs as it is
        replay=None if use_model else experiment.replay,
        parallel=1,  # a repository's tasks one after another: the stored responses were made so
        return_state=True,
        **blocks,
    )
    outcome = state.result(raise_on_failure=False)
    report = outcome.report if isinstance(outcome, RunFailed) else outcome
    return report if isinstance(report, RunReport) else outcome


def note_outcome(name: str, outcome: object) -> list[str]:
    """Log how an experiment went; what the night's result names as a problem of it (nothing if it succeeded)."""
    logger = get_run_logger()
    if not isinstance(outcome, RunReport):
        logger.error("%s did not run: %s", name, outcome)
        return [f"{name} did not run: {outcome}"]
    logger.info("%s: %s, success rate %.0f%%", name, outcome.status, 100 * outcome.success_rate)
    return [] if outcome.status == "succeeded" else [f"{name} {outcome.status}"]


def evaluate_runs(reports: list[RunReport], state_store_block: str | None) -> list[RunEvaluation]:
    """The evaluation of each run, from what it recorded in the state store."""
    store = runtime().store(state_store_block)
    try:
        evaluations = []
        for r in reports:
            session = store.sessions.get(r.run_id)
            assert session is not None, r.run_id  # the run recorded itself before it reported
            evaluations.append(evaluate(session, store.attempts.of(r.run_id), store.attempts.states(r.run_id), store.attempts.model_calls(r.run_id)))
    finally:
        store.close()
    return evaluations
