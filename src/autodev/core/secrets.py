"""Secrets a plan's steps need (API keys): named in the plan, their values never in it.

A plan lists names under `secrets:`; the values come, when the run starts, from autodev's
environment or a Prefect Secret block (`src/autodev/blocks/secrets.py`), and reach only the sandbox's
environment and the redactors that mask them. A value written into a step's `env` under a name
that looks secret (KEY, TOKEN, SECRET, PASSWORD, ...) is lifted out of the plan the same way
before the plan is stored or handed to Prefect as a parameter.
"""

from __future__ import annotations

from pydantic import BaseModel

from autodev.core.agents import preset_of, presets_in
from autodev.core.errors import BadInput
from autodev.core.models import Plan, Step
from autodev.core.redact import SECRET_NAME


class LiftedSecrets(BaseModel):
    plan: Plan  # the plan with no secret value in it
    values: dict[str, str]  # the values taken out of its steps' env, by name


class SecretNames(BaseModel):
    required: list[str]  # the plan's `secrets:`: a run does not start without them
    optional: list[str]  # its agents' API key variables: passed when set


def lift_env_secrets(plan: Plan) -> LiftedSecrets:
    """Take secret-looking values out of the steps' `env`: the names join `secrets:`."""
    values: dict[str, str] = {}
    steps = []
    for step in plan.steps:
        kept = {}
        for name, value in step.env.items():
            if not SECRET_NAME.search(name):
                kept[name] = value
            elif values.setdefault(name, value) != value:
                raise BadInput(
                    f"steps give {name} two different values in `env`: list {name} under `secrets:` and set it "
                    "in autodev's environment instead"
                )
        steps.append(step.model_copy(update={"env": kept}) if len(kept) < len(step.env) else step)
    if not values:
        return LiftedSecrets(plan=plan, values={})
    lifted = plan.model_copy(update={"steps": steps, "secrets": list(dict.fromkeys([*plan.secrets, *values]))})
    return LiftedSecrets(plan=lifted, values=values)


def secret_names(plan: Plan) -> SecretNames:
    optional = [name for preset in presets_in(plan) for name in preset.secrets if name not in plan.secrets]
    return SecretNames(required=list(plan.secrets), optional=list(dict.fromkeys(optional)))


def step_env(plan: Plan, step: Step, secrets: dict[str, str]) -> dict[str, str]:
    """A step's environment: its `env`, the plan's secrets, and its agent's API keys when set."""
    preset = preset_of(plan, step)
    names = [*plan.secrets, *(preset.secrets if preset else ())]
    own = preset.env if preset else {}
    return {**own, **step.env, **{name: secrets[name] for name in names if name in secrets}}


def block_name(name: str) -> str:
    """The Prefect Secret block a secret is looked up under: OPENAI_API_KEY -> openai-api-key."""
    return name.lower().replace("_", "-")
