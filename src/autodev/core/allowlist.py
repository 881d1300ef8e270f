"""Which hosts each step of a plan with an allow-list may reach (`network: {allow: [...]}`): the
plan's list, the step's own, and the hosts its agents reach their models at: each preset's
default host, and every base URL in the agent's arguments or its step's environment (a Codex
`-c model_providers.x.base_url=...`, `ANTHROPIC_BASE_URL`, `OPENAI_API_BASE`)."""

from __future__ import annotations

import re

from autodev.core.agents import preset_of
from autodev.core.egress import PLAN_WIDE, Egress, EgressRules, url_host
from autodev.core.models import Plan, Step

_URL = re.compile(r"https?://[^\s'\"]+")
_BASE_URL_NAME = re.compile(r"(BASE_URL|API_BASE|_BASE)$")


def egress_rules(plan: Plan) -> EgressRules | None:
    """What the proxy lets through for `plan`; None when it has no allow-list."""
    if not isinstance(plan.network, Egress):
        return None
    models = [host for step in plan.steps for host in model_hosts(plan, step)]
    hosts = {PLAN_WIDE: list(dict.fromkeys([*plan.network.allow, *models]))}
    hosts |= {step.id: step.network.allow for step in plan.steps if step.network is not None}
    return EgressRules(hosts=hosts)


def model_hosts(plan: Plan, step: Step) -> list[str]:
    """The hosts an agent step reaches its model at; none for a command step."""
    preset = preset_of(plan, step)
    if step.kind != "agent":
        return []
    args = (step.agent_args if step.agent else plan.agent_args) or ""
    urls = _URL.findall(args) + [v for k, v in step.env.items() if _BASE_URL_NAME.search(k)]
    configured = [host for url in urls if (host := url_host(url))]
    return [*(preset.model_hosts if preset else ()), *configured]
