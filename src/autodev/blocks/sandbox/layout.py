"""Where a run's sandbox keeps each attempt's files in the workspace, and the mark its processes
carry: `.autodev/logs/<run>/<step>.<attempt>.log` (the full output), `.<attempt>.exit` (the
exit status the step wrapper writes when the command ends, so a command that ends after its
orchestrator died still tells how it ended) and `AUTODEV_STEP=<run>/<step>/<attempt>/` in the
environment of everything the attempt starts (what a kill, or a resumed run, looks for).
Only the sandbox backend (`docker.py`, `leftovers.py`) reads and writes these."""

from __future__ import annotations

from pathlib import Path

MARKER_VAR = "AUTODEV_STEP"  # set on every command; inherited by what it starts
KEPT_HOME = ".autodev/home"  # in the workspace: the folders under HOME a command asks to keep


def keep_home(folders: tuple[str, ...], workspace: str) -> str:
    """Shell run before a command: each folder under HOME is a link to `.autodev/home/<folder>`
    in the workspace (`workspace` as the container sees it), so what is written there outlives
    the container (a folder the image has there already is left as it is)."""
    links = [
        f'mkdir -p "{workspace}/{KEPT_HOME}/{folder}" "$(dirname "$HOME/{folder}")" && '
        f'{{ [ -e "$HOME/{folder}" ] || ln -s "{workspace}/{KEPT_HOME}/{folder}" "$HOME/{folder}"; }} && '
        for folder in folders
    ]
    return "".join(links)


def status_dir(workspace: Path, run_id: str) -> Path:
    """Where a run's exit status files and logs are."""
    return workspace / ".autodev" / "logs" / run_id


def log_path(workspace: Path, run_id: str, step_id: str, attempt: int) -> Path:
    return status_dir(workspace, run_id) / f"{step_id}.{attempt}.log"


def exit_path(workspace: Path, run_id: str, step_id: str, attempt: int) -> Path:
    return status_dir(workspace, run_id) / f"{step_id}.{attempt}.exit"


def attempt_key(run_id: str, step_id: str, attempt: int) -> str:
    """The mark an attempt's processes carry (the trailing slash keeps attempt 1 apart from 10)."""
    return f"{run_id}/{step_id}/{attempt}/"


def read_exit_status(path: Path) -> int | None:
    """The exit status the step wrapper wrote to `path`; None when there is none (yet)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.lstrip("-").isdigit() else None
