"""The development flow: a requirements document becomes a plan, a scaffolded workspace and a run.

It reads like the process: read the requirements, pick the template and render it, ask for a
plan (the model's, or the template's with manual guidance), have a person confirm a plan no
model made, scaffold the workspace as its first git commit, then run the plan flow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from prefect import flow, get_run_logger, pause_flow_run
from prefect import runtime as prefect_runtime
from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import FlowPauseTimeout
from prefect.input import RunInput
from prefect.states import Failed
from pydantic import Field

from autodev.blocks.git_state import has_commits, read_repo_map
from autodev.blocks.replay import REPLAY_MODEL
from autodev.core.agents import AgentChoice, with_agent
from autodev.core.decomposition import Decomposition
from autodev.core.errors import AutodevError, BadInput, RunFailed
from autodev.core.lanes import in_lanes
from autodev.core.models import Plan, RepositoryReport, utcnow
from autodev.core.plan import load_plan
from autodev.core.repository import RepoMap
from autodev.core.scaffold import (
    Requirements,
    check_new_workspace,
    parse_requirements,
)
from autodev.core.session import Pause, RunOrigin
from autodev.flows.backlog import backlog_for, open_branch
from autodev.flows.dashboard import artifact_key
from autodev.flows.decision import back_to_running
from autodev.flows.plan_flow import run_plan
from autodev.flows.runtime import runtime
from autodev.tasks.decomposer import decompose, decompose_repository
from autodev.tasks.scaffold import scaffold


class Confirmation(RunInput):
    """A person's go-ahead for a plan that no model made."""

    run: bool = Field(True, description="run this plan (untick to stop here)")
    note: str = Field("", description="why; kept with the run")


class NotConfirmed(AutodevError):
    """Nobody confirmed the template's plan in time, or a person declined it (exit 3)."""

    exit_code = 3


def _flow_run_name() -> str:
    parameters = prefect_runtime.flow_run.parameters
    plan = parameters.get("plan")
    if plan is not None:
        source = plan.get("project") if isinstance(plan, dict) else getattr(plan, "project", "plan")
    else:
        source = Path(str(parameters.get("requirements") or "requirements")).stem
    return f"develop-{source}-{datetime.now():%Y%m%d-%H%M%S}"


def read_requirements(path: str) -> Requirements:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot read requirements {path}: {exc.strerror or exc}") from exc
    return parse_requirements(text, source=path)


@flow(name="autodev-develop", flow_run_name=_flow_run_name, persist_result=False)
def develop(
    requirements: str | None = None,
    plan: Plan | str | None = None,
    workspace: str | None = None,
    template: str | None = None,
    confirm: bool = True,
    replay: str | None = None,
    sandbox_block: str | None = None,
    state_store_block: str | None = None,
    llm_block: str | None = None,
    agent: AgentChoice | None = None,
    parallel: int | None = None,
):
    """Develop `requirements` (a markdown file) in `workspace` and run the plan.

    A `workspace` that is a git repository with commits is worked on as it is: on a new branch
    `autodev/<project>-<time>` in a clone of its own (the checkout is never touched), with no
    scaffold, planned from a map of the repository. Otherwise `workspace` is a new directory
    (default: one under AUTODEV_WORKSPACE_ROOT), scaffolded from a template first.

    `template` overrides the one the requirements name; `confirm=False` runs a plan no model made
    without asking; `replay`: stored model responses, when no model is configured; `agent`: the
    coding-agent CLI of every agent step (default: the built-in agent); `parallel`: a repository's
    tasks at once (`--parallel`; default: the settings' or the machine's figure). The blocks are
    as for the plan flow. Given a `plan` (or its file's path), it runs it as `autodev exec` does."""
    blocks = dict(sandbox_block=sandbox_block, state_store_block=state_store_block, llm_block=llm_block)
    if plan is not None and requirements is None:
        return run_given_plan(plan, workspace, replay, blocks)
    if requirements is None or plan is not None:
        raise BadInput("give either `requirements` (a markdown file) or a `plan`, not both or neither")
    wanted = read_requirements(requirements)
    target = choose_target(workspace, wanted)
    decomposition = make_plan(wanted, template, target.repo_map, llm_block, replay, agent, parallel)
    show_plan(decomposition)
    try:
        pauses = [ask_for_confirmation(decomposition)] if decomposition.source == "template" and confirm else []
    except NotConfirmed as exc:  # ends the flow run Failed without a traceback in its log
        get_run_logger().error(str(exc))
        return Failed(message=str(exc), data=exc)
    return run_developed_plan(decomposition, requirements, *set_up_workspace(target, wanted, decomposition), pauses, replay, blocks)


@dataclass(frozen=True)
class Target:
    """Where a development run works: a new directory, or a repository to branch, with its map."""

    workspace: str
    repository: Path | None = None
    repo_map: RepoMap | None = None


def run_given_plan(plan: Plan | str, workspace: str | None, replay: str | None, blocks: dict[str, str | None]):
    """Run a plan (or a plan file's path) as `autodev exec` does; the workspace may exist."""
    plan = load_plan(plan) if isinstance(plan, str) else plan
    workspace = workspace or str(runtime().settings.new_workspace(plan.project))
    return outcome_of(run_plan(plan=plan, workspace=workspace, replay=replay, return_state=True, **blocks))


def choose_target(workspace: str | None, wanted: Requirements) -> Target:
    """`workspace` if it is a git repository with commits (with its map, for the plan), else a new
    directory (`workspace`, or one under AUTODEV_WORKSPACE_ROOT) checked before any model call or question."""
    if workspace and is_repository(Path(workspace)):
        repo_map = read_repo_map(Path(workspace)).model_copy(update={"backlog": backlog_for(Path(workspace), wanted.source)})
        return Target(workspace, Path(workspace), repo_map)
    workspace = workspace or str(runtime().settings.new_workspace(wanted.project))
    check_workspace(Path(workspace))
    return Target(workspace)


def check_workspace(path: Path) -> None:
    """A workspace that is no repository with commits must be new or empty (BadInput names the
    fix, for a repository with no commit yet too)."""
    if (path / ".git").exists() and not is_repository(path):
        raise BadInput(
            f"workspace {path} is a git repository with no commit yet: autodev branches from a commit, "
            "so commit what is there first (`git add -A && git commit -m start`)"
        )
    check_new_workspace(path)


def make_plan(
    wanted: Requirements, template: str | None, repo_map: RepoMap | None, llm_block: str | None, replay: str | None,
    agent: AgentChoice | None = None, parallel: int | None = None,
) -> Decomposition:  # fmt: skip
    """The plan for the requirements: for the repository of `repo_map`, or for a template; the
    model's, or the template's with manual guidance; its agent steps run `agent` when one is
    chosen; a repository's tasks `parallel` at once (unset: the settings' or the machine's figure),
    each in a worktree of its own, when above 1."""
    parallel = parallel or runtime().settings.tasks_at_once()
    with runtime().model(llm_block, replay, get_run_logger().info) as llm:
        made = decompose_repository(wanted, repo_map, llm) if repo_map else decompose(wanted, template, llm)
    plan = made.plan if agent is None else with_agent(made.plan, agent)
    if repo_map is not None and parallel > 1:
        plan = in_lanes(plan, repo_map.test_command, parallel)
        get_run_logger().info(f"up to {parallel} tasks at once, each on a branch of its own, merged after the tests pass "
                              "(--parallel 1: one after another on one branch)")  # fmt: skip
    return made.model_copy(update={"plan": plan})


def set_up_workspace(target: Target, wanted: Requirements, decomposition: Decomposition) -> tuple[str, RepositoryReport | None]:
    """Where the plan runs: the new directory scaffolded from the template (its first git commit),
    or the repository's new branch in a clone of its own (with the branch, for the run's report)."""
    if target.repository is None:
        scaffold(target.workspace, wanted, decomposition.template, decomposition.files)
        return target.workspace, None
    assert target.repo_map is not None
    branch = open_branch(target.repository, wanted.project, target.repo_map)
    return branch.worktree, branch


def run_developed_plan(
    decomposition: Decomposition, requirements: str, workspace: str, branch: RepositoryReport | None, pauses: list[Pause],
    replay: str | None, blocks: dict[str, str | None],
):  # fmt: skip
    """Run the plan flow on the plan, with where it came from; this flow's return for its outcome."""
    state = run_plan(
        plan=decomposition.plan, workspace=workspace, origin=origin_of(decomposition, requirements), pauses=pauses,
        replay=replay, repository=branch, return_state=True, **blocks,
    )  # fmt: skip
    return outcome_of(state)


def is_repository(path: Path) -> bool:
    """A git repository with commits: worked on in place, on a branch of its own."""
    return path.is_dir() and has_commits(path)


def origin_of(decomposition: Decomposition, requirements: str) -> RunOrigin:
    """Where the run's plan came from, as kept with the run."""
    replayed = any(u.model == REPLAY_MODEL for u in decomposition.usage)
    return RunOrigin(
        source="replay" if replayed and decomposition.source == "model" else decomposition.source,
        requirements=str(Path(requirements).resolve()),  # the next run on the same document finds this one by it
        template=decomposition.template,
        template_reason=decomposition.template_reason,
        reason=decomposition.reason,
        usage=decomposition.usage,
    )


def outcome_of(state):
    """This flow's return for the plan flow's final state: its report, or a Failed state
    carrying it (so this flow run ends Failed too)."""
    outcome = state.result(raise_on_failure=False)
    if isinstance(outcome, RunFailed):
        return Failed(message=str(outcome), data=outcome)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def show_plan(decomposition: Decomposition) -> None:
    plan = decomposition.plan
    rows = "\n".join(f"| {s.id} | {s.kind} | {', '.join(s.depends_on)} | `{s.command}` |" for s in plan.steps)
    models = sorted({u.model for u in decomposition.usage})
    if decomposition.source == "template":
        made_by = f"the `{decomposition.template}` template's default steps ({decomposition.reason})"
    elif models == [REPLAY_MODEL]:
        made_by = f"stored model responses, replayed ({len(decomposition.usage)} call(s)); no live model"
    else:
        made_by = f"the model ({', '.join(models)}, {len(decomposition.usage)} call(s))"
    template = f"Template: `{decomposition.template}` ({decomposition.template_reason})."
    markdown = (
        f"# Plan for {plan.project}\n\nMade by {made_by}.\n\n{template}\n\n"
        f"| step | kind | after | does |\n|---|---|---|---|\n{rows}\n"
    )
    if decomposition.guidance:
        markdown += "\n" + decomposition.guidance
    create_markdown_artifact(key=f"plan-{artifact_key(plan.project)}", markdown=markdown, description=f"{plan.project}: the plan")


def ask_for_confirmation(decomposition: Decomposition) -> Pause:
    """Pause until a person confirms the template's plan (Prefect UI or `prefect flow-run resume`)."""
    timeout = int(runtime().settings.decision_timeout_s)
    get_run_logger().warning(
        "the plan is the %s template's, not a model's: confirm it in the Prefect UI within %ss (or run with --yes)",
        decomposition.template, timeout,
    )
    description = (
        f"No model made this plan: {decomposition.reason}. It is the `{decomposition.template}` template's default plan; "
        "the manual guidance is in the plan artifact. Run it?"
    )
    try:
        answer = pause_flow_run(
            wait_for_input=Confirmation.with_initial_data(description=description, run=True),
            timeout=timeout,
            poll_interval=max(1, min(10, timeout // 4 or 1)),
        )
    except FlowPauseTimeout as exc:
        back_to_running("nobody confirmed the plan in time")
        raise NotConfirmed(f"nobody confirmed the template's plan within {timeout}s; run again with --yes to skip asking") from exc
    if not answer.run:
        raise NotConfirmed(f"a person declined the template's plan{': ' + answer.note if answer.note else ''}")
    return Pause(kind="confirmation", ts=utcnow())
