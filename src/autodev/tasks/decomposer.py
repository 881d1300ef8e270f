"""The decomposer task: requirements -> a validated plan, from the model or from the template."""

from __future__ import annotations

import logging

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from autodev.blocks.llm import LLM, LLMError
from autodev.core.decomposition import (
    DECOMPOSE_PROMPT,
    PICK_PROMPT,
    Decomposition,
    TemplatePick,
    decompose_request,
    pick_request,
    repair_request,
    template_plan,
)
from autodev.core.errors import BadInput
from autodev.core.models import LLMUsage, Plan
from autodev.core.plan import validate_plan
from autodev.core.repository import REPO_PROMPT, RepoMap, repo_request, repository_guidance, repository_plan, with_baseline
from autodev.core.scaffold import (
    Manifest,
    Requirements,
    TemplateChoice,
    choose_template,
    manual_guidance,
    render_template,
    template_listing,
)


def template_for(
    requirements: Requirements, choice: TemplateChoice, llm: LLM | None, logger: logging.Logger | logging.LoggerAdapter
) -> TemplateChoice:
    """The template pick itself, callable without Prefect (`autodev plan`): the choice as it was
    when a template is named, no model is configured or its answer is not a listed template."""
    if not choice.generic or llm is None:
        return choice
    manifests = {m.name: m for m in template_listing()}
    try:
        answer = llm.ask_json(PICK_PROMPT, pick_request(requirements, list(manifests.values())), TemplatePick)
    except LLMError as exc:
        logger.warning("no template picked (%s): the generic one", exc)
        return choice.model_copy(update={"usage": [exc.usage] if exc.usage else []})
    picked, usage = answer.value, [answer.usage]
    if picked.template in manifests:
        logger.info("template %s, picked by %s: %s", picked.template, llm.model, picked.why)
        return TemplateChoice(manifest=manifests[picked.template], reason=f"picked by the model: {picked.why}", usage=usage)
    return choice.model_copy(update={"reason": f"{choice.reason}; the model picked no other: {picked.why}", "usage": usage})


@task(name="decompose", task_run_name="decompose", cache_policy=NO_CACHE, persist_result=False)
def decompose(requirements: Requirements, template: str | None, llm: LLM | None) -> Decomposition:
    """The template (named, picked by the model, or the generic one), its files rendered, and a
    plan for them: the model's (one repair attempt when its answer does not validate), or, when
    there is no model or it fails twice, the template's default plan with manual guidance."""
    return decompose_requirements(requirements, template, llm, get_run_logger())


def decompose_requirements(
    requirements: Requirements, template: str | None, llm: LLM | None, logger: logging.Logger | logging.LoggerAdapter
) -> Decomposition:
    """The decomposition itself, callable without Prefect (`autodev plan`)."""
    choice = template_for(requirements, choose_template(requirements, template), llm, logger)
    files = render_template(choice.manifest, requirements.variables, project=requirements.project)
    made = plan_for(requirements, choice.manifest, files, llm, logger)
    return made.model_copy(update={"template_reason": choice.reason, "usage": choice.usage + made.usage, "files": files})


def plan_for(
    requirements: Requirements, manifest: Manifest, files: dict[str, str], llm: LLM | None, logger: logging.Logger | logging.LoggerAdapter
) -> Decomposition:
    """The decomposer itself, callable without Prefect (`autodev plan`)."""
    asked = model_plan(llm, DECOMPOSE_PROMPT, decompose_request(requirements, manifest, files), logger)
    if asked.plan is not None:
        return Decomposition(plan=asked.plan, source="model", template=manifest.name, usage=asked.usage)
    logger.warning("using the %s template's default plan: %s", manifest.name, asked.reason)
    return Decomposition(
        plan=template_plan(requirements, manifest),
        source="template",
        template=manifest.name,
        guidance=manual_guidance(requirements, manifest, files, asked.reason),
        reason=asked.reason,
        usage=asked.usage,
    )


@task(name="decompose", task_run_name="decompose-repository", cache_policy=NO_CACHE, persist_result=False)
def decompose_repository(requirements: Requirements, repo: RepoMap, llm: LLM | None) -> Decomposition:
    """A plan for tasks in a repository that exists: the model's, or one agent step and the
    tests per task, with manual guidance; a baseline run of the tests comes first either way."""
    return plan_for_repository(requirements, repo, llm, get_run_logger())


def plan_for_repository(
    requirements: Requirements, repo: RepoMap, llm: LLM | None, logger: logging.Logger | logging.LoggerAdapter
) -> Decomposition:
    """`decompose_repository` itself, callable without Prefect (`autodev plan`)."""
    asked = model_plan(llm, REPO_PROMPT, repo_request(requirements, repo), logger)
    made = dict(template="repository", template_reason=f"an existing {repo.language} repository: no scaffold", usage=asked.usage)
    if asked.plan is not None:
        return Decomposition(plan=with_baseline(asked.plan, repo.test_command), source="model", **made)
    logger.warning("using one agent step and the tests per task: %s", asked.reason)
    return Decomposition(
        plan=repository_plan(requirements, repo), source="template", reason=asked.reason,
        guidance=repository_guidance(requirements, repo, asked.reason), **made,
    )


class ModelPlan(BaseModel):
    """What asking the model for a plan gave: the plan, or why there is none."""

    plan: Plan | None = None
    usage: list[LLMUsage] = Field(default_factory=list)
    reason: str = ""


def model_plan(llm: LLM | None, system: str, request: str, logger: logging.Logger | logging.LoggerAdapter) -> ModelPlan:
    """Ask the model for a plan; one repair attempt quoting the problem when its answer does not
    validate (none when it did not answer at all: a repair cannot help)."""
    if llm is None:
        return ModelPlan(reason="no model is configured (AUTODEV_LLM_MODEL is unset)")
    usage: list[LLMUsage] = []
    errors: list[str] = []
    for attempt in (1, 2):
        user = request if attempt == 1 else f"{request}\n\n{repair_request(errors[-1])}"
        try:
            answer = llm.ask_json(system, user, Plan)
            usage.append(answer.usage)
            plan = validate_plan(answer.value.model_dump(exclude_unset=True), f"the plan from {llm.model}")
        except (LLMError, BadInput) as exc:
            if isinstance(exc, LLMError) and exc.usage:
                usage.append(exc.usage)
            errors.append(str(exc))
            logger.warning("decompose attempt %d: %s", attempt, exc)
            if isinstance(exc, LLMError) and exc.usage is None:
                break
            continue
        logger.info("plan from %s: %d steps%s", llm.model, len(plan.steps), " (after one repair)" if attempt == 2 else "")
        return ModelPlan(plan=plan, usage=usage)
    answered = len(usage) == len(errors)  # every call got an answer, none of them valid
    problem = errors[-1][:300]
    reason = f"the model's answers did not make a valid plan ({problem})" if answered else f"the model failed ({problem})"
    return ModelPlan(usage=usage, reason=reason)
