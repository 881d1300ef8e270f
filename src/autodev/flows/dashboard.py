"""The run's dashboard in the Prefect UI: artifacts on the flow run's page.

- `autodev-progress`: a progress bar, steps finished out of all;
- `autodev-steps`: a table of the plan with each step's live state, attempts and exit code;
- `autodev-run-summary`: at the end, the outcome, the heartbeat and what blocked the run;
- `insights-<project>`: the next-step advice, each time it changes.
Updates are throttled to the heartbeat interval (a 1,000-step plan must not make 1,000 table
versions), and a plan of more than TABLE_ROWS steps shows a window of them; the last update
always happens. They go to the Prefect API from a thread of their own, in order, so the loop
never waits for the API between one step's end and the next one's start (an update took 30-40
ms there: Prefect makes a client for each call, and each loads its TLS roots); the run's end
waits for them all.
"""

from __future__ import annotations

import contextvars
import re
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import cast
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact, update_progress_artifact

from autodev.core.engine.scheduling import Progress
from autodev.core.evaluation import evaluation_markdown
from autodev.core.models import Insight, Plan, utcnow
from autodev.core.recovery import heartbeat_delay_s, heartbeat_is_late
from autodev.core.report import RunReport
from autodev.core.session import LimitWait, RunEvaluation, SessionMetadata

TABLE_ROWS = 200  # a longer plan's table shows a window of it: each update is a new version


def state_of(step_id: str, running: set[str], waits: dict[str, LimitWait]) -> str:
    """An unfinished step's state: running, waiting for its provider's limit (until when), or pending."""
    if step_id in running:
        return "running"
    if (wait := waits.get(step_id)) is not None and wait.until > utcnow():
        return f"waiting until {wait.until:%H:%M:%S} UTC ({(wait.until - utcnow()).total_seconds():.0f}s)"
    return "pending"


def artifact_key(name: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")


class RunDashboard:
    def __init__(self, plan: Plan, interval_s: float):
        self.plan = plan
        self.interval_s = interval_s
        self._last = 0.0
        self._progress_id = cast(UUID, create_progress_artifact(
            progress=0.0, key="autodev-progress", description=f"{plan.project}: steps finished"
        ))  # fmt: skip
        self._logger = get_run_logger()
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="autodev-dashboard")
        self._sent: Future | None = None  # the newest update handed to the sender

    def _send(self, *artifacts: Callable[[], object]) -> None:
        """Create or update `artifacts` from the sender's thread, in the flow run's context (which
        links them to the run); one that fails is a warning, never the run's end."""

        def send() -> None:
            for artifact in artifacts:
                try:
                    artifact()
                except Exception as exc:  # the Prefect API is the flow's to report; the dashboard only lags
                    self._logger.warning("could not update the run's dashboard: %s: %s", exc.__class__.__name__, exc)

        self._sent = self._sender.submit(contextvars.copy_context().run, send)

    def update(self, progress: Progress, running: set[str], waits: dict[str, LimitWait] | None = None, force: bool = False) -> None:
        if not force and (time.monotonic() - self._last < self.interval_s or (self._sent is not None and not self._sent.done())):
            return  # too soon, or the last update is still on its way: a later one shows the newest
        self._last = time.monotonic()
        done = sum(status is not None for status in progress.status.values())
        rows = [
            {
                "step": s.id,
                "state": progress.status[s.id] or state_of(s.id, running, waits or {}),
                "attempts": progress.attempts[s.id],
                "depends on": ", ".join(s.depends_on),
                "command": s.command if len(s.command) <= 80 else s.command[:77] + "...",
            }
            for s in progress.shown_steps(running, TABLE_ROWS)
        ]
        total = len(self.plan.steps)
        shown = "" if len(rows) == total else f" ({len(rows)} of {total} steps: off track, running, next)"
        self._send(
            lambda: update_progress_artifact(self._progress_id, progress=round(100 * done / total, 1)),
            lambda: create_table_artifact(table=rows, key="autodev-steps", description=f"{self.plan.project}: the plan, live{shown}"),
        )  # fmt: skip

    def show_advice(self, insight: Insight) -> None:
        markdown = insight_markdown(insight)
        self._send(lambda: create_markdown_artifact(
            key=f"insights-{artifact_key(self.plan.project)}", markdown=markdown, description=f"{self.plan.project}: what to do next",
        ))  # fmt: skip

    def finish(self, progress: Progress, report: RunReport, meta: SessionMetadata, evaluation: RunEvaluation) -> None:
        """The last update and the run's summary and figures; returns once all are in."""
        self.update(progress, set(), force=True)
        summary, figures = summary_markdown(report, meta), evaluation_markdown(evaluation)
        self._send(
            lambda: create_markdown_artifact(key="autodev-run-summary", markdown=summary, description=self.plan.project),
            lambda: create_markdown_artifact(
                key=f"evaluation-{artifact_key(self.plan.project)}", markdown=figures,
                description=f"{self.plan.project}: how the run went, in figures",
            ),
        )  # fmt: skip
        self.close()

    def close(self, wait: bool = True) -> None:
        """Wait for the updates on their way (a run that ends shows its last state); without
        `wait` (the run crashed, perhaps because the Prefect API went away), drop those not yet
        sent (one being sent ends with Prefect's client: when it answers or gives up)."""
        self._sender.shutdown(wait=wait, cancel_futures=not wait)


def summary_markdown(report: RunReport, meta: SessionMetadata) -> str:
    rows = "\n".join(
        f"| {s.id} | {s.status} | {'' if s.exit_code is None else s.exit_code} | {s.duration_s:.2f} | {s.attempts} |"
        for s in report.steps
    )
    now = utcnow()
    delay, late = heartbeat_delay_s(meta, now), heartbeat_is_late(meta, report.status, now)
    heartbeat = "never" if delay == float("inf") else f"{delay:.0f}s ago"
    lines = [
        f"# Run {report.status}",
        "",
        f"success rate {report.success_rate:.0%} | interventions {report.interventions} | phase {meta.phase} | "
        + (f'heartbeat <span style="color:red">**{heartbeat}**</span>' if late else f"heartbeat {heartbeat}"),
        "",
        "| step | status | exit code | seconds | attempts |",
        "|---|---|---|---|---|",
        rows,
    ]
    lines += tasks_markdown(report)
    if report.repository:
        r = report.repository
        lines += [
            "", f"**Branch** `{r.branch}` of `{r.repository}` (from `{r.base[:8]}`): {len(r.commits)} commit(s)"
            + (f", {r.diff_stat}" if r.diff_stat else "") + f". Tests before: {r.tests_before or '-'}; after: {r.tests_after or '-'}."
            + (f" Left out (uncommitted in the checkout): {', '.join(r.left_out[:10])}." if r.left_out else "")
            + (f" Goes on from run `{r.continues}`: done there, {', '.join(r.carried) or 'nothing'}." if r.continues else ""),
        ]
    for b in report.blockers:
        waiting = [s.id for s in report.steps if b.step_id in s.waits_for]
        held = f" Waiting on it: {', '.join(waiting)}." if waiting else ""
        lines += ["", f"**Blocked at `{b.step_id}` ({b.kind}):** {b.summary}{held}", "", f"**Try:** {b.suggested_action}"]
    return "\n".join(lines) + "\n"


def tasks_markdown(report: RunReport) -> list[str]:
    """The morning report's table: per task, its outcome, time, tokens and cost, and for one that
    did not succeed, why and what to run next."""
    if not report.tasks:
        return []
    rows = [
        f"| {t.task} | **{'merged' if t.merged else t.status}** | {t.branch or ''} | {', '.join(t.steps)} | {t.duration_s:.0f} | {t.tokens:,} | {t.cost_usd:.2f} | "
        f"{t.reason[:200]} | {t.action[:200]}{f' `{t.command}`' if t.command else ''} |"
        for t in report.tasks
    ]
    return ["", "| task | outcome | branch | steps | seconds | tokens | cost ($) | why | next |", "|---|---|---|---|---|---|---|---|---|", *rows]


def insight_markdown(insight: Insight) -> str:
    lines = [f"# Next steps (confidence {insight.confidence:.2f})", ""]
    for i, r in enumerate(insight.recommendations, 1):
        lines.append(f"{i}. **{r.action}**  \n   why: {r.reason}" + (f"  \n   run: `{r.command}`" if r.command else ""))
    steps = insight.evidence.get("steps", {})
    git = insight.evidence.get("git", {})
    lines += [
        "",
        f"Evidence: {steps.get('succeeded', 0)}/{steps.get('total', 0)} steps succeeded; "
        f"failed {steps.get('failed') or 'none'}; blocked {steps.get('blocked') or 'none'}; "
        + (
            f"git {git.get('branch')} @ {str(git.get('head'))[:8]}, {len(git.get('dirty_files', []))} changed, "
            f"{len(git.get('untracked_files', []))} untracked, {len(git.get('conflicts', []))} conflicts, "
            f"{git.get('commits_since_start', 0)} commit(s) this run"
            if git.get("is_repo")
            else "the workspace is not a git repository"
        ),
    ]
    return "\n".join(lines) + "\n"
