"""The language-model client: any litellm model string, JSON answers validated against a schema.

litellm is imported only when a model is configured (its import costs ~4 s), and with its cost
map read from the package, not fetched (no internet on build machines). Every call reports its
tokens and cost so runs can record what the model cost them.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from typing import Generic, TypeVar

from prefect.blocks.core import Block
from pydantic import BaseModel, Field, SecretStr, ValidationError

from autodev.blocks.replay import REPLAY_MODEL
from autodev.core.errors import AutodevError
from autodev.core.models import LLMUsage

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class Answer(Generic[T]):
    """A model's answer, validated, and what the call cost."""

    value: T
    usage: LLMUsage


class LLMError(AutodevError):
    """The model failed, timed out or answered something that does not validate; `usage` is what
    the call cost when the model did answer."""

    def __init__(self, message: str, usage: LLMUsage | None = None, timed_out: bool = False):
        super().__init__(message)
        self.usage = usage
        self.timed_out = timed_out


class LLM(Block):
    _block_type_name = "autodev LLM"
    _description = "A litellm model (any provider) used for advice and plans."

    model: str = Field(description="litellm model string, e.g. openai/gpt-4o-mini or ollama/llama3")
    api_base: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    api_key: SecretStr | None = None
    timeout_s: float = 60

    @classmethod
    def replaying(cls, api_base: str, timeout_s: float = 60) -> LLM:
        """The client for a local replay server (blocks.replay): stored answers, no provider."""
        return cls(model=REPLAY_MODEL, api_base=api_base, api_key="replay", timeout_s=timeout_s)

    def ask_json(self, system: str, user: str, schema: type[T]) -> Answer[T]:
        """One completion whose answer must be JSON matching `schema`; LLMError otherwise."""
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.suppress_debug_info = True  # its help banner would land on stdout, inside --json output
        try:
            response = litellm.completion(
                model=self.model,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                api_base=self.api_base,
                api_key=self.api_key.get_secret_value() if self.api_key else None,
                timeout=self.timeout_s,
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": schema.__name__, "schema": schema.model_json_schema()},
                },
                num_retries=0,
            )
        except Exception as exc:  # litellm maps every provider's errors to its own classes
            timed_out = "timeout" in exc.__class__.__name__.lower()
            raise LLMError(f"model {self.model} failed: {exc.__class__.__name__}: {str(exc)[:300]}", timed_out=timed_out) from exc
        usage = LLMUsage(model=self.model, tokens=getattr(response.usage, "total_tokens", 0) or 0)
        with contextlib.suppress(Exception):  # unknown (local) models have no price: record the tokens only
            usage.cost_usd = float(litellm.completion_cost(completion_response=response) or 0.0)
        text = response.choices[0].message.content or ""
        try:
            return Answer(schema.model_validate(json.loads(_strip_fences(text))), usage)
        except (json.JSONDecodeError, ValidationError) as exc:
            problem = str(exc).splitlines()[0] if isinstance(exc, json.JSONDecodeError) else _first_errors(exc)
            raise LLMError(
                f"model {self.model} answered with something that is not a valid {schema.__name__} ({problem}): {text[:200]!r}",
                usage,
            ) from exc


def _first_errors(exc: ValidationError, limit: int = 5) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'top level'}: {e['msg']}" for e in exc.errors()[:limit])


def _strip_fences(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    return text
