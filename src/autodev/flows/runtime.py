"""The composition root: what a process works with, put together in one place from the settings
read once (`autodev/core/settings.py`).

A flow (and the CLI) asks `runtime()` for the state store, the sandbox and the model, each from a
Prefect block saved under a name (created or edited in the UI) or from the AUTODEV_* settings
when no block is named. No other module reads the settings (`tests/test_project.py` checks it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from autodev.core.models import Plan
from autodev.core.settings import Settings, load_settings

if TYPE_CHECKING:  # imported where they are used: the CLI reads the settings on paths that must
    # not wait for Prefect's import (a bad plan exits 2 at once)
    from autodev.blocks.llm import LLM
    from autodev.blocks.sandbox.docker import DockerSandbox
    from autodev.blocks.store import Store


@dataclass(frozen=True)
class Runtime:
    settings: Settings

    def store(self, block_name: str | None = None) -> Store:
        """The state store, open: the block saved under `block_name`, or AUTODEV_DATABASE_URL's."""
        from autodev.blocks.store import StateStore

        config = cast(StateStore, StateStore.load(block_name)) if block_name else StateStore(database_url=self.settings.database_url)
        return config.connect(retry_s=self.settings.store_retry_s)

    def sandbox(self, block_name: str | None, plan: Plan) -> DockerSandbox:
        """The sandbox block saved under `block_name`, or the AUTODEV_* settings; what the plan asks
        for (image, network) wins over either."""
        from autodev.blocks.sandbox.docker import DockerSandbox
        from autodev.core.allowlist import egress_rules

        s = self.settings
        config = cast(DockerSandbox, DockerSandbox.load(block_name)) if block_name else DockerSandbox(image=s.image, memory=s.sandbox_memory, pids_limit=s.sandbox_pids)
        if rules := egress_rules(plan):
            return config.model_copy(update={"image": plan.image or config.image, "network": False, "egress": rules})
        return config.model_copy(update={"image": plan.image or config.image, "network": plan.network or config.network})

    def llm(self, block_name: str | None = None) -> LLM | None:
        """The LLM block saved under `block_name`, or the model AUTODEV_LLM_MODEL names, or none."""
        from autodev.blocks.llm import LLM

        if block_name:
            return cast(LLM, LLM.load(block_name))
        s = self.settings
        if not s.llm_model:
            return None
        return LLM(model=s.llm_model, api_base=s.llm_api_base, api_key=s.llm_api_key, timeout_s=s.llm_timeout_s)

    @contextmanager
    def model(self, block_name: str | None, replay: str | None, say: Callable[[str], None]) -> Iterator[LLM | None]:
        """The run's model: the LLM block or AUTODEV_LLM_MODEL; when neither is configured and
        `replay` names a file, its stored responses replayed by a local server (offline runs)."""
        from autodev.blocks.llm import LLM
        from autodev.blocks.replay import ReplayServer, load_cassette

        configured = self.llm(block_name)
        if configured is not None or not replay:
            yield configured
            return
        with ReplayServer(load_cassette(replay)) as server:
            say(f"model answers are replayed from {replay} by a local server, not asked of a model")
            yield LLM.replaying(server.api_base, self.settings.llm_timeout_s)


_current: tuple[tuple[tuple[str, str], ...], Runtime] | None = None


def runtime() -> Runtime:
    """This process's runtime. The settings are read once; again only when the AUTODEV_*
    environment changed since (a test that sets a variable)."""
    global _current
    environment = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AUTODEV_")))
    if _current is None or _current[0] != environment:
        _current = (environment, Runtime(load_settings()))
    return _current[1]
