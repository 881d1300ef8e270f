"""The scaffold task: render a template into the workspace and commit it as the first commit."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from autodev.blocks.git_state import commit_all
from autodev.core.errors import BadInput
from autodev.core.scaffold import Requirements, check_new_workspace, find_todos

REQUIREMENTS_FILE = "REQUIREMENTS.md"  # kept in the workspace so agents and people can read it


@task(name="scaffold", task_run_name="scaffold", cache_policy=NO_CACHE, persist_result=False)
def scaffold(workspace: str, requirements: Requirements, template: str, files: dict[str, str]) -> str:
    """Write the rendered `files` into an empty `workspace`, then commit them; the commit's sha.

    A workspace that already holds files is refused rather than overwritten: nothing is lost.
    """
    logger = get_run_logger()
    root = Path(workspace).resolve()
    check_new_workspace(root)
    root.mkdir(parents=True, exist_ok=True)
    for relative, text in {**files, REQUIREMENTS_FILE: requirements.text}.items():
        target = (root / relative).resolve()
        if not target.is_relative_to(root):  # render_template checked already; this is the last guard
            raise BadInput(f"path {relative!r} would leave the workspace: refused")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    (root / ".gitignore").write_text(".autodev/\n__pycache__/\n.pytest_cache/\n", encoding="utf-8")
    sha = commit_all(root, f"scaffold {requirements.project} from template {template}")
    todos = find_todos(files)
    logger.info(
        "scaffolded %d files from template %s, first commit %s; TODO markers in %s",
        len(files), template, sha[:8], ", ".join(f"{p} (line {', '.join(map(str, n))})" for p, n in todos.items()) or "no file",
    )
    return sha
