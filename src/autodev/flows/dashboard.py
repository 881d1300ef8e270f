"""The run's dashboard in the Prefect UI: artifacts on the flow run's page.

- `autodev-progress`: a progress bar, steps finished out of all;
- `autodev-steps`: a table of the plan with each step's live state, attempts and exit code;
- `autodev-run-summary`: at the end, the outcome, the heartbeat and what blocked the run;
- `insights-<project>`: the next-step advice, each time it changes.
Updates are throttled to the heartbeat interval (a 1,000-step plan must not make 1,000 table
versions), and a plan of more than TABLE_ROWS steps shows a window of them; the last update
always happens.
"""

from __future__ import annotations

import re
import time
from typing import cast
from uuid import UUID

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

    def update(self, progress: Progress, running: set[str], waits: dict[str, LimitWait] | None = None, force: bool = False) -> None:
        if not force and time.monotonic() - self._last < self.interval_s:
            return
        self._last = time.monotonic()
        done = sum(status is not None for status in progress.status.values())
        update_progress_artifact(self._progress_id, progress=round(100 * done / len(self.plan.steps), 1))
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
        create_table_artifact(table=rows, key="autodev-steps", description=f"{self.plan.project}: the plan, live{shown}")

    def show_advice(self, insight: Insight) -> None:
        create_markdown_artifact(
            key=f"insights-{artifact_key(self.plan.project)}",
            markdown=insight_markdown(insight),
            description=f"{self.plan.project}: what to do next",
        )

    def finish(self, progress: Progress, report: RunReport, meta: SessionMetadata, evaluation: RunEvaluation) -> None:
        self.update(progress, set(), force=True)
        create_markdown_artifact(
            key="autodev-run-summary", markdown=summary_markdown(report, meta), description=self.plan.project
        )
        create_markdown_artifact(
            key=f"evaluation-{artifact_key(self.plan.project)}",
            markdown=evaluation_markdown(evaluation),
            description=f"{self.plan.project}: how the run went, in figures",
        )


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
