"""Settings from the environment (AUTODEV_*) and an optional TOML config file.

The config file is `~/.autodev/config.toml` or the file named by AUTODEV_CONFIG; environment
variables win over it. Every setting has a default, so a fresh machine needs no set-up.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

AUTODEV_HOME = Path(os.environ.get("AUTODEV_HOME", Path.home() / ".autodev"))
DEFAULT_IMAGE = "autodev-sandbox:latest"
GIB = 1024**3


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUTODEV_", extra="ignore")

    database_url: str = Field(
        f"sqlite:///{AUTODEV_HOME / 'autodev.db'}",
        description="sqlite:///PATH (default) or postgresql://USER:PASSWORD@HOST:PORT/DB",
    )
    image: str = Field(DEFAULT_IMAGE, description="Sandbox image used when a plan names none.")
    stall_timeout_s: float | None = Field(None, gt=0, description="Overrides every plan's default stall timeout.")
    breaker_threshold: int = Field(3, ge=1, description="Identical failures in a row that block a run.")
    decision_timeout_s: float = Field(
        3600, ge=1, description="How long a blocked run waits for a person's decision before the CLI exits 3."
    )
    agent: str | None = Field(
        None, description="The coding-agent CLI for every agent step of `autodev run`: codex, claude or aider "
        "(`--agent` wins); unset or builtin: autodev's built-in agent."
    )
    agent_args: str | None = Field(None, description="Extra arguments for that CLI (model, provider settings).")
    agent_network: bool | str = Field(
        True, description="The sandbox network an agent CLI gets to reach its model, when the plan names none: "
        "true (Docker's default bridge), host, or a Docker network's name."
    )
    parallel: int | None = Field(
        None, ge=1, le=32, description="How many tasks of a repository `autodev run` works on at once (`--parallel` wins); "
        "above 1, each task has a clone and branch of its own and is merged after the tests pass; "
        "unset: a figure for this machine (machine_parallel)."
    )
    limit_wait_max_s: float = Field(
        6 * 3600, gt=0, description="The longest a step waits for its provider's usage or rate limit to reset "
        "(the waits in a row, from the first); past it the step blocks for a person."
    )
    webhook_url: str | None = Field(None, description="Where `autodev automations apply` sends notifications.")
    insight_confidence_drop: float = Field(
        0.2, gt=0, le=1, description="A confidence drop this large sends a decision-support notification."
    )
    llm_model: str | None = Field(None, description="Any litellm model string; unset means no model is used.")
    llm_api_base: str | None = Field(None, description="OpenAI-compatible endpoint for the model.")
    llm_api_key: str | None = Field(None, description="API key for the model's provider.")
    llm_timeout_s: float = Field(60, gt=0, description="How long one model call may take.")
    heartbeat_interval_s: float = Field(10, gt=0, description="How often a waiting loop records its heartbeat.")
    store_retry_s: float = Field(
        60, ge=0, description="How long a state store write is retried when the database went away (PostgreSQL restarted)."
    )
    output_tail_bytes: int = Field(64 * 1024, ge=1024, description="How much of each step's output is stored.")
    live_log_bytes: int = Field(
        1024 * 1024, ge=0, description="How much of each step's output is streamed into the Prefect task log."
    )
    sandbox_memory: str = Field("4g", description="Memory limit of a sandbox container.")
    sandbox_pids: int = Field(1024, ge=16, description="Process limit of a sandbox container.")
    workspace_root: Path = Field(AUTODEV_HOME / "workspaces", description="Where runs without --workspace work.")
    prefect_server: Literal["managed", "temporary"] = Field(
        "managed",
        description="With no PREFECT_API_URL: a local Prefect server autodev starts once and keeps (managed), "
        "or a temporary server for each run (Prefect's default).",
    )
    server_home: Path = Field(AUTODEV_HOME / "server", description="The managed Prefect server's PID, log and database.")

    def tasks_at_once(self) -> int:
        """`parallel` when set, else the figure for this machine."""
        return self.parallel or machine_parallel()

    def new_workspace(self, project: str) -> Path:
        """Where a run without a given workspace works: a new directory named after the project and the time."""
        return self.workspace_root / f"{project}-{datetime.now():%Y%m%d-%H%M%S}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = Path(os.environ.get("AUTODEV_CONFIG", AUTODEV_HOME / "config.toml"))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=config_file))


def machine_parallel(cpus: int | None = None, memory_bytes: int | None = None) -> int:
    """How many tasks run at once by default: up to 4, no more than the cores (a task's checks and
    the merge queue's tests use a core each; an agent mostly waits for its model) and one per
    2 GiB of memory (an agent CLI and its tests in a sandbox); at least 1."""
    if cpus is None:  # the cores this process may use (sched_getaffinity is Linux's)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if memory_bytes is None:
        try:
            memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):  # no sysconf: the cores decide
            memory_bytes = 2 * GIB * cpus
    return max(1, min(4, cpus, memory_bytes // (2 * GIB)))


def load_settings() -> Settings:
    """The settings as the environment and the config file say now: read by the composition
    root (`autodev/flows/runtime.py`), once per process."""
    return Settings()
