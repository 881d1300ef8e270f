"""The decomposer task: requirements -> a validated plan, from the model or from the template."""

from __future__ import annotations

import logging

from prefect import get_run_logger, task

from autodev.decomposition import DECOMPOSE_PROMPT, Decomposition, decompose_request, repair_request, template_plan
from autodev.errors import BadInput
from autodev.models import LLMUsage, Plan
from autodev.plan import validate_plan
from autodev.scaffold import Manifest, Requirements, manual_guidance
from blocks.llm import LLM, LLMError


@task(name="decompose", task_run_name="decompose", cache_policy=None, persist_result=False)
def decompose(requirements: Requirements, manifest: Manifest, files: dict[str, str], llm: LLM | None) -> Decomposition:
    """Ask the model for a plan (one repair attempt when its answer does not validate); when
    there is no model, or it fails twice, use the template's default plan with manual guidance."""
    return plan_for(requirements, manifest, files, llm, get_run_logger())


def plan_for(
    requirements: Requirements, manifest: Manifest, files: dict[str, str], llm: LLM | None, logger: logging.Logger | logging.LoggerAdapter
) -> Decomposition:
    """The decomposer itself, callable without Prefect (`autodev plan`)."""
    usage: list[LLMUsage] = []
    if llm is None:
        reason = "no model is configured (AUTODEV_LLM_MODEL is unset)"
    else:
        request = decompose_request(requirements, manifest, files)
        errors: list[str] = []
        for attempt in (1, 2):
            user = request if attempt == 1 else f"{request}\n\n{repair_request(errors[-1])}"
            try:
                answer = llm.ask_json(DECOMPOSE_PROMPT, user, Plan)
                usage.append(answer.usage)
                plan = validate_plan(answer.value.model_dump(exclude_unset=True), f"the plan from {llm.model}")
            except (LLMError, BadInput) as exc:
                if isinstance(exc, LLMError) and exc.usage:
                    usage.append(exc.usage)
                errors.append(str(exc))
                logger.warning("decompose attempt %d: %s", attempt, exc)
                if isinstance(exc, LLMError) and exc.usage is None:
                    break  # the model did not answer at all (down, timed out): a repair cannot help
                continue
            logger.info("plan from %s: %d steps%s", llm.model, len(plan.steps), " (after one repair)" if attempt == 2 else "")
            return Decomposition(plan=plan, source="model", template=manifest.name, usage=usage)
        answered = len(usage) == len(errors)  # every call got an answer, none of them valid
        problem = errors[-1][:300]
        reason = f"the model's answers did not make a valid plan ({problem})" if answered else f"the model failed ({problem})"
    logger.warning("using the %s template's default plan: %s", manifest.name, reason)
    return Decomposition(
        plan=template_plan(requirements, manifest),
        source="template",
        template=manifest.name,
        guidance=manual_guidance(requirements, manifest, files, reason),
        reason=reason,
        usage=usage,
    )
