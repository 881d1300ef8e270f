"""Requirements documents and scaffold templates: pure logic, no Prefect, no Docker.

A requirements document is markdown with an optional YAML front matter naming the project,
the template and its variables. A template is a folder `templates/<name>/` holding
`manifest.yaml` (variables, files, default steps, where the TODO markers are) and `files/`.
Rendering returns the files as text; `src/autodev/tasks/scaffold.py` writes them and makes the first commit.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jinja2
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from autodev.core.errors import BadInput
from autodev.core.models import STEP_ID_PATTERN, LLMUsage, Step, workspace_relative

TEMPLATES_DIR = Path(__file__).resolve().parents[3] / "templates"  # the repository's templates/
TODO_MARKER = "TODO(autodev)"
GENERIC_TEMPLATE = "python-package"  # for requirements no template is named for: it carries no spec


class Variable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default: str
    description: str = ""


class TemplateFile(BaseModel):
    """One file of a template: `src` under the template's files/, `dest` in the workspace
    (Jinja2 in the path always, in the content when `render` is true)."""

    model_config = ConfigDict(extra="forbid")

    src: str
    dest: str | None = None
    render: bool = False


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str
    keywords: list[str] = Field(default_factory=list, description="Words the model is shown when it picks a template.")
    variables: dict[str, Variable] = Field(default_factory=dict)
    files: list[TemplateFile] = Field(min_length=1)
    todo: list[str] = Field(default_factory=list, description=f"Files that hold {TODO_MARKER} markers once rendered.")
    steps: list[dict[str, Any]] = Field(min_length=1, description="Default plan steps (the fallback plan).")


class Requirements(BaseModel):
    """A requirements document: its front matter and its markdown body."""

    project: str
    template: str | None = None
    variables: dict[str, str] = Field(default_factory=dict)
    text: str
    source: str = "requirements"


def parse_requirements(text: str, source: str = "requirements") -> Requirements:
    """Split the optional `---` YAML front matter (project, template, variables) from the text."""
    meta: dict[str, Any] = {}
    match = re.match(r"\A---\s*\n(.*?)^---\s*$\n?", text, re.S | re.M)
    if match:
        try:
            meta = yaml.safe_load(match.group(1)) or {}
        except yaml.YAMLError as exc:
            raise BadInput(f"{source}: the front matter is not valid YAML: {exc}") from exc
        if not isinstance(meta, dict):
            raise BadInput(f"{source}: the front matter must be a mapping (project, template, variables)")
        text = text[match.end():]
    if not text.strip():
        raise BadInput(f"{source}: the requirements document is empty")
    unknown = set(meta) - {"project", "template", "variables"}
    if unknown:
        raise BadInput(f"{source}: unknown front matter key(s) {', '.join(sorted(unknown))}")
    if not isinstance(meta.get("variables") or {}, dict):
        raise BadInput(f"{source}: front matter `variables` must be a mapping of names to values")
    title = re.search(r"^#\s+(.+)$", text, re.M)
    project = str(meta.get("project") or _slug(title.group(1) if title else Path(source).stem))
    if not re.match(STEP_ID_PATTERN, project):
        raise BadInput(f"{source}: front matter `project` {project!r}: use letters, digits, '-', '_' and '.' (e.g. {_slug(project)!r})")
    variables = {str(k): str(v) for k, v in (meta.get("variables") or {}).items()}
    template = str(meta["template"]) if meta.get("template") is not None else None
    return Requirements(project=project, template=template, variables=variables, text=text, source=source)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:64] or "project"


def available_templates(root: Path = TEMPLATES_DIR) -> list[str]:
    return sorted(p.parent.name for p in root.glob("*/manifest.yaml"))


def load_manifest(name: str, root: Path = TEMPLATES_DIR) -> Manifest:
    path = root / name / "manifest.yaml"
    if "/" in name or name.startswith(".") or not path.is_file():
        raise BadInput(f"no template {name!r}; templates here: {', '.join(available_templates(root)) or 'none'}")
    try:
        manifest = Manifest.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (yaml.YAMLError, ValidationError) as exc:
        raise BadInput(f"template {name!r}: manifest.yaml is invalid: {exc}") from exc
    for raw in manifest.steps:  # the default steps must make a valid plan on their own
        try:
            Step.model_validate(raw)
        except ValidationError as exc:
            raise BadInput(f"template {name!r}: default step {raw.get('id')!r} is invalid: {exc}") from exc
    return manifest


class TemplateChoice(BaseModel):
    """The template a workspace is scaffolded from, and why (shown with the plan)."""

    manifest: Manifest
    reason: str
    usage: list[LLMUsage] = Field(default_factory=list)  # the model call that picked it, if one did

    @property
    def generic(self) -> bool:
        return self.manifest.name == GENERIC_TEMPLATE


def choose_template(requirements: Requirements, named: str | None = None, root: Path = TEMPLATES_DIR) -> TemplateChoice:
    """The template `named` (`--template`) or the front matter names; else the generic one.

    A template's own files carry a spec (its tests judge the work), so words the requirements
    share with it never impose it: only a person naming it, or a model picking it and saying
    why (`src/autodev/tasks/decomposer.py`), does."""
    if named:
        return TemplateChoice(manifest=load_manifest(named, root), reason=f"--template {named}")
    if requirements.template:
        return TemplateChoice(manifest=load_manifest(requirements.template, root), reason="named in the requirements' front matter")
    return TemplateChoice(
        manifest=load_manifest(GENERIC_TEMPLATE, root),
        reason="no template is named: the generic python-package (the plan writes the tests from the requirements)",
    )


def template_listing(root: Path = TEMPLATES_DIR) -> list[Manifest]:
    """Every template a model may pick, the generic one aside."""
    return [load_manifest(name, root) for name in available_templates(root) if name != GENERIC_TEMPLATE]


def template_values(manifest: Manifest, variables: dict[str, str], project: str) -> dict[str, str]:
    """What the template's Jinja2 sees: `project`, `package` (the project as a Python name), the
    manifest's defaults, then the requirements' variables."""
    unknown = set(variables) - set(manifest.variables)
    if unknown:
        raise BadInput(f"template {manifest.name!r} has no variable(s) {', '.join(sorted(unknown))}")
    builtins = {"project": project, "package": re.sub(r"\W+", "_", project.lower()).strip("_") or "package"}
    return builtins | {name: var.default for name, var in manifest.variables.items()} | variables


def render_template(
    manifest: Manifest, variables: dict[str, str], root: Path = TEMPLATES_DIR, *, project: str = "project"
) -> dict[str, str]:
    """The template's files as {workspace-relative path: text}; BadInput for a path that would
    leave the workspace, an unknown variable, or a missing source file."""
    values = template_values(manifest, variables, project)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    files_dir = (root / manifest.name / "files").resolve()
    rendered: dict[str, str] = {}
    for item in manifest.files:
        src = (files_dir / item.src).resolve()
        if not src.is_relative_to(files_dir):
            raise BadInput(f"template {manifest.name!r}: file {item.src!r} is outside the template's files/")
        if not src.is_file():
            raise BadInput(f"template {manifest.name!r}: file {item.src!r} is missing")
        try:
            dest = safe_relative_path(env.from_string(item.dest or item.src).render(values))
            text = src.read_text(encoding="utf-8")
            rendered[dest] = env.from_string(text).render(values) if item.render else text
        except jinja2.TemplateError as exc:
            raise BadInput(f"template {manifest.name!r}: file {item.src!r}: {exc}") from exc
    return rendered


def template_steps(manifest: Manifest, variables: dict[str, str], project: str) -> list[dict[str, Any]]:
    """The template's default steps with its variables filled in (Jinja2 in any string)."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    values = template_values(manifest, variables, project)

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return env.from_string(value).render(values) if "{" in value else value
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    try:
        return [fill(step) for step in manifest.steps]
    except jinja2.TemplateError as exc:
        raise BadInput(f"template {manifest.name!r}: default steps: {exc}") from exc


def safe_relative_path(path: str) -> str:
    """`path` as a normalised workspace-relative path, or BadInput when it would leave the
    workspace (absolute, `..`) or touch git's own files."""
    try:
        return workspace_relative(path)
    except ValueError as exc:
        raise BadInput(str(exc)) from exc


def check_new_workspace(workspace: Path) -> None:
    """A scaffold goes into a new or empty directory only: nothing there is overwritten."""
    if workspace.exists() and not workspace.is_dir():
        raise BadInput(f"workspace {workspace} exists and is not a directory")
    existing = sorted(p.name for p in workspace.iterdir() if p.name != ".autodev") if workspace.exists() else []
    if existing:
        raise BadInput(
            f"workspace {workspace} is not empty ({', '.join(existing[:5])}) and is not a git repository with commits: "
            "give a new or empty directory for a new project, or a git repository to work on "
            "(`git init && git add -A && git commit -m start` makes one; autodev then works on a branch of its own)"
        )


def find_todos(files: dict[str, str]) -> dict[str, list[int]]:
    """Where the TODO markers are: {path: [line numbers]}."""
    found: dict[str, list[int]] = {}
    for path, text in files.items():
        lines = [n for n, line in enumerate(text.splitlines(), 1) if TODO_MARKER in line]
        if lines:
            found[path] = lines
    return found


def manual_guidance(requirements: Requirements, manifest: Manifest, files: dict[str, str], reason: str) -> str:
    """A markdown checklist for a person, when no model produced the plan."""
    items: list[str] = []
    in_code = False
    for line in requirements.text.splitlines():
        in_code ^= line.lstrip().startswith("```")
        bullet = re.match(r"^\s*(?:[-*+]|\d+[.)])\s+(\S.*)$", line)
        if in_code or line.lstrip().startswith("```"):
            continue
        if bullet and not line.startswith("    "):
            items.append(bullet.group(1).strip())
        elif items and line.startswith(" ") and line.strip():
            items[-1] += " " + line.strip()  # the bullet goes on on this line
    lines = [
        f"# Manual guidance: {requirements.project}",
        "",
        f"This plan is the `{manifest.name}` template's default plan, not a model's: {reason}.",
        "Check it before it runs. With no coding agent (no model, no agent_command) the run stops at each",
        "agent step for you: fill in the TODO markers below, then skip the step (in the Prefect UI, or",
        "`autodev resume RUN_ID --action skip`) and the checks after it judge your code.",
        "",
        "## Fill in the TODO markers",
        "",
        *[
            f"- [ ] `{path}` line{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines))}: replace `{TODO_MARKER}`"
            for path, lines in find_todos(files).items()
        ],
        "",
        "## Requirements to check off",
        "",
        *[f"- [ ] {item}" for item in items],
        "",
        "## Then",
        "",
        "- [ ] run the plan's test step and read its output",
    ]
    return "\n".join(lines) + "\n"


def todo_files_in(root: Path, max_bytes: int = 1024 * 1024) -> list[str]:
    """Workspace-relative paths of the files holding TODO markers (git's and autodev's own
    folders left out)."""
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if relative.parts[0] in (".git", ".autodev") or not path.is_file() or path.stat().st_size > max_bytes:
            continue
        try:
            if TODO_MARKER in path.read_text(encoding="utf-8"):
                found.append(relative.as_posix())
        except (UnicodeDecodeError, OSError):
            continue
    return found
