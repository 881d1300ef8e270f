"""The run's next-step advice (`metadata.next_actions`), kept up to date as the loop goes.

The full computation (the insights task: the workspace's git state, and the model's wording when
one is configured) runs at most once per heartbeat interval, and always when the run blocks or
ends. In between, when a step failed, blocked or was waived since the last advice, the rules are
applied to the latest progress with the git state last read: no subprocess, task run or model
call. People hear of the advice (an event, and the artifact) only when it changed.
"""

from __future__ import annotations

import time
from pathlib import Path

from autodev.blocks.git_state import read_git_state
from autodev.blocks.llm import LLM
from autodev.blocks.replay import REPLAY_MODEL
from autodev.core.engine.inputs import AdviceReady
from autodev.core.engine.loop import Advisor
from autodev.core.engine.machine import RunEngine
from autodev.core.engine.resumes import resumes_of
from autodev.core.insights import advise
from autodev.core.models import GitState, Insight
from autodev.core.session import LLMCall
from autodev.flows.arguments import as_is
from autodev.tasks.insights import compute_insight


class RunAdvisor(Advisor):
    def __init__(self, run_id: str, workspace: Path, llm: LLM | None, interval_s: float):
        self.run_id = run_id
        self.workspace = workspace
        # Stored answers cannot reword live advice: a replayed run keeps the rules' wording.
        self.llm = llm if llm is None or llm.model != REPLAY_MODEL else None
        self.interval_s = interval_s
        self.start_head = read_git_state(workspace).head  # the advice measures changes from here
        self.insight: Insight | None = None
        self._last_full = 0.0
        self._advised: frozenset = frozenset()  # the steps failed, blocked or skipped when the advice was last made

    def advise(self, engine: RunEngine, force: bool) -> AdviceReady | None:
        """The advice for the engine's latest progress; None when nothing it depends on changed
        since the last."""
        full = force or self.insight is None or time.monotonic() - self._last_full >= self.interval_s
        # Between full computations the rules' advice changes only when a step fails, blocks or
        # is waived (the run's end forces a full computation): nothing else is worth a write.
        key = frozenset(engine.progress.off_track.items())
        if not full and key == self._advised:
            return None
        self._advised = key
        statuses, attempts, blockers = dict(engine.progress.status), dict(engine.progress.attempts), list(engine.state.doc.blockers)
        resumes, refused = resumes_of(engine.state.doc.cli_sessions), dict(engine.state.doc.refused)
        calls: list[LLMCall] = []
        if full or self.insight is None:
            self._last_full = time.monotonic()
            # quote(): a large plan is costly for Prefect to look through
            advice = compute_insight(
                self.run_id, as_is(engine.plan), as_is(statuses), as_is(attempts), as_is(blockers), str(self.workspace),
                self.start_head, llm=as_is(self.llm), resumes=as_is(resumes), refused=as_is(refused),
            )  # fmt: skip
            insight = advice.insight
            if advice.usage is not None:
                calls.append(LLMCall(purpose="insights", **advice.usage.model_dump()))
        else:
            git = GitState.model_validate(self.insight.evidence.get("git", {}))
            insight = advise(self.run_id, engine.plan, statuses, attempts, blockers, git, resumes, refused)
        # The advice quotes commands and output: mask every step's secrets in all of it.
        self.insight = Insight.model_validate_json(engine.redact_all.text(insight.model_dump_json()))
        lines = [r.action + (f"  ->  {r.command}" if r.command else "") for r in self.insight.recommendations]
        return AdviceReady(insight=self.insight, lines=lines, model_calls=calls)
