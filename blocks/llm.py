"""The language-model client: any litellm model string, JSON answers validated against a schema.

litellm is imported only when a model is configured (its import costs ~4 s), and with its cost
map read from the package, not fetched (no internet on build machines). Every call reports its
tokens and cost so runs can record what the model cost them.
"""

from __future__ import annotations

import json
import os
from typing import TypeVar

from prefect.blocks.core import Block
from pydantic import BaseModel, Field, SecretStr, ValidationError

from autodev.errors import AutodevError

T = TypeVar("T", bound=BaseModel)


class LLMError(AutodevError):
    """The model failed, timed out or answered something that does not validate."""


class Usage(BaseModel):
    model: str
    tokens: int = 0
    cost_usd: float = 0.0


class LLM(Block):
    _block_type_name = "autodev LLM"
    _description = "A litellm model (any provider) used for advice and plans."

    model: str = Field(description="litellm model string, e.g. openai/gpt-4o-mini or ollama/llama3")
    api_base: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    api_key: SecretStr | None = None
    timeout_s: float = 60

    def ask_json(self, system: str, user: str, schema: type[T]) -> tuple[T, Usage]:
        """One completion whose answer must be JSON matching `schema`; LLMError otherwise."""
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

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
            raise LLMError(f"model {self.model} failed: {exc.__class__.__name__}: {str(exc)[:300]}") from exc
        usage = Usage(model=self.model, tokens=getattr(response.usage, "total_tokens", 0) or 0)
        try:
            usage.cost_usd = float(litellm.completion_cost(completion_response=response) or 0.0)
        except Exception:  # unknown (local) models have no price: record the tokens only
            pass
        text = response.choices[0].message.content or ""
        try:
            return schema.model_validate(json.loads(_strip_fences(text))), usage
        except (json.JSONDecodeError, ValidationError) as exc:
            raise LLMError(f"model {self.model} answered with something that is not a valid {schema.__name__}: {text[:200]!r}") from exc


def _strip_fences(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    return text
