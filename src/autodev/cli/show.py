"""What the CLI shows of a run: its report and session from the state store, as a table or JSON."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from autodev.core.errors import BadInput
from autodev.core.models import RepositoryReport, utcnow
from autodev.core.recovery import heartbeat_delay_s, heartbeat_is_late
from autodev.core.report import RunReport
from autodev.core.session import SessionMetadata, SessionRecord
from autodev.flows.runtime import runtime

out = Console()
STATUS_STYLE = {"succeeded": "green", "failed": "red", "stalled": "red", "timed_out": "red", "blocked": "yellow", "waiting": "cyan"}


def load_run(run_id: str | None) -> tuple[RunReport, SessionRecord]:
    """A run's report and session from the state store (the newest run when run_id is None)."""
    store = runtime().store()
    try:
        session = store.sessions.get(run_id) if run_id else store.sessions.latest()
        if session is None:
            raise BadInput(f"no run {run_id!r} in the state store" if run_id else "no runs recorded yet")
        report = store.report(session)
    finally:
        store.close()
    return report, session


def show_report(report: RunReport, as_json: bool, session: SessionRecord, with_metadata: bool = False) -> None:
    """The report as a table, or as one JSON object (`with_metadata`: with the run's metadata
    document as the seed defines it: last_command_result, command_history, phase, blockers,
    queue, next_actions {recommendations, confidence, evidence}, heartbeat, ...)."""
    if as_json:
        print_json(report, session.metadata if with_metadata else None)
        return
    out.print(steps_table(report))
    out.print(status_line(report, session.metadata))
    show_blockers(report)
    show_tasks(report)
    if report.repository:
        show_repository(report.repository)
    for action in report.next_actions[:3]:
        out.print(f"[cyan]next:[/] {action}", highlight=False)
    ui = flow_run_url(session.flow_run_id or report.run_id)  # a continued run's newest flow run
    if ui:
        out.print(f"Prefect UI: {ui}", highlight=False, soft_wrap=True)


def print_json(report: RunReport, metadata: SessionMetadata | None) -> None:
    """The report as one JSON object on stdout, with the run's metadata under `metadata` if given."""
    shown = report.model_dump(mode="json")
    if metadata is not None:
        shown["metadata"] = metadata.model_dump(mode="json")
    print(json.dumps(shown))


def steps_table(report: RunReport) -> Table:
    """One row per step: its status, exit code, time, attempts and last line of output."""
    table = Table(title=f"run {report.run_id}", title_justify="left", header_style="bold")
    for column in ("step", "status", "exit", "seconds", "attempts", "last output"):
        table.add_column(column, overflow="fold")
    for s in report.steps:
        style = STATUS_STYLE.get(s.status, "")
        last_line = next((ln for ln in reversed(s.output_tail.splitlines()) if ln.strip()), "")
        status: str = s.status
        if s.status == "waiting" and s.waiting_until is not None:
            status += f" until {s.waiting_until:%H:%M:%S} UTC ({max(0.0, (s.waiting_until - utcnow()).total_seconds()):.0f}s)"
        table.add_row(
            s.id,
            f"[{style}]{status}[/]" if style else status,
            "" if s.exit_code is None else str(s.exit_code),
            f"{s.duration_s:.2f}",
            str(s.attempts),
            last_line[-80:],
        )
    return table


def status_line(report: RunReport, meta: SessionMetadata) -> str:
    """The run's status, success rate and phase, and how long ago its orchestrator's heartbeat was
    (in red when it is late)."""
    colour = STATUS_STYLE.get(report.status, "")
    shown = f"{report.status}, orchestrator gone" if report.orchestrator_gone else report.status
    line = f"[bold {colour}]{shown}[/]  success rate {report.success_rate:.0%}  phase {meta.phase}"
    if meta.orchestrator_heartbeat:
        now = utcnow()
        delay = heartbeat_delay_s(meta, now)
        late = heartbeat_is_late(meta, report.status, now) or report.orchestrator_gone
        line += f"  heartbeat {'[bold red]' if late else ''}{delay:.0f}s ago{'[/]' if late else ''}"
    return line


def show_blockers(report: RunReport) -> None:
    """Each blocked step: why, which steps wait on it, and what to try."""
    waiting = {b.step_id: [s.id for s in report.steps if b.step_id in s.waits_for] for b in report.blockers}
    for b in report.blockers:
        held = f"; waiting on it: {', '.join(waiting[b.step_id])}" if waiting[b.step_id] else ""
        out.print(f"[yellow]blocked at {b.step_id} ({b.kind}):[/] {b.summary}{held}", highlight=False)
        out.print(f"[yellow]try:[/] {b.suggested_action}", highlight=False)


def show_tasks(report: RunReport) -> None:
    """Each task of the plan: its status, its steps, its time and cost; why it did not succeed
    and what to do about it."""
    for task in report.tasks:
        style = STATUS_STYLE.get(task.status, "")
        cost = f", {task.tokens:,} tokens" + (f", ${task.cost_usd:.2f}" if task.cost_usd else "") if task.tokens else ""
        figures = f" {task.duration_s:.0f}s{cost}"
        status = "[green]merged[/]" if task.merged else f"[{style}]{task.status}[/]" if style else task.status
        out.print(f"task {status}: {task.task} ({', '.join(task.steps)};{figures})", highlight=False, soft_wrap=True)
        if task.branch and not task.merged and task.status != "succeeded":
            out.print(f"  its work: branch {task.branch}", highlight=False, soft_wrap=True)
        if task.reason:
            out.print(f"  why: {task.reason}", highlight=False, soft_wrap=True)
        if task.action or task.command:
            out.print(f"  next: {task.action}" + (f"  ->  {task.command}" if task.command else ""), highlight=False, soft_wrap=True)


def show_repository(repo: RepositoryReport) -> None:
    """Where a repository run's work is, and what it changed."""
    out.print(f"branch [bold]{repo.branch}[/] of {repo.repository} (from {repo.base[:8]}), worktree {repo.worktree}", highlight=False, soft_wrap=True)
    if repo.continues:
        out.print(f"  goes on from run {repo.continues}: {len(repo.carried)} task(s) done there, left alone" + "".join(f"\n    {t}" for t in repo.carried), highlight=False, soft_wrap=True)
    out.print(f"  {len(repo.commits)} commit(s)" + (f", {repo.diff_stat}" if repo.diff_stat else ""), highlight=False)
    for commit in repo.commits[-5:]:
        out.print(f"  {commit}", highlight=False)
    out.print(f"  tests before: {repo.tests_before or '-'}; after: {repo.tests_after or '-'}", highlight=False)
    if repo.left_out:
        out.print(f"  [yellow]left out (uncommitted in your checkout):[/] {', '.join(repo.left_out[:10])}", highlight=False)


def flow_run_url(flow_run_id: str) -> str | None:
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    if not PREFECT_API_URL.value():
        return None  # the temporary server is gone when the command ends
    return f"{PREFECT_UI_URL.value()}/runs/flow-run/{flow_run_id}"
