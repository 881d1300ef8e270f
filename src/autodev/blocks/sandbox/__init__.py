"""The sandbox interface: a place where a run's commands execute, one after another or side by side.

One abstract session interface; the Docker backend is `docker.py` (the container) and
`session.py` (its commands), with the files it keeps per attempt in `layout.py` and what a dead
orchestrator left behind in `leftovers.py`. A session lives as long as one run; files and
installed packages persist between its commands.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

from autodev.core.commands import CommandRequest, CommandResult

# Takes each chunk of output; False when the chunk shows no progress (it leaves the stall clock as
# it is), anything else when it does.
OutputSink = Callable[[bytes], bool | None]


class SandboxSession(ABC):
    """A running sandbox for one run."""

    @abstractmethod
    def run(self, request: CommandRequest, on_output: OutputSink, on_started: Callable[[], None] | None = None) -> CommandResult:
        """Run one command to its end, handing each output chunk to `on_output` as it arrives;
        `on_started` is called once the command runs, before any of its output is handed over.
        A request that names its step and attempt leaves their files in the sandbox's layout.

        Never raises for what the command does; a lost engine gives exit_code None with a reason.
        """

    @abstractmethod
    def log_path(self, step_id: str, attempt: int) -> Path | None:
        """Where an attempt's full output is kept on this side (None: nowhere)."""

    @abstractmethod
    def close(self) -> None:
        """Stop the sandbox and remove it. Safe to call twice."""

    def __enter__(self) -> SandboxSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
