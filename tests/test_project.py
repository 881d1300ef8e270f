"""Project files that users and Prefect read: prefect.yaml entrypoints, the sample plan."""

import ast
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import yaml
from prefect import Flow
from prefect.utilities.importtools import import_object

from autodev.core.plan import load_plan

ROOT = Path(__file__).resolve().parents[1]


def test_every_prefect_yaml_entrypoint_is_a_flow(monkeypatch):
    monkeypatch.chdir(ROOT)
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert config["deployments"]
    for deployment in config["deployments"]:
        assert isinstance(import_object(deployment["entrypoint"]), Flow), deployment["name"]


def test_the_sample_plans_are_valid():
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        assert load_plan(path).steps, path


def test_only_the_autodev_package_lands_in_site_packages():
    """No top-level `cli`, `tasks` or `flows` package to collide with another project's."""
    distribution = importlib.metadata.distribution("autodev")
    assert (distribution.read_text("top_level.txt") or "").split() == ["autodev"]


# --- the layout shows the architecture (docs/architecture.md, "What each folder may import") ---

PACKAGE = ROOT / "src" / "autodev"
LAYERS = ("core", "blocks", "tasks", "flows", "cli")
MAY_IMPORT = {  # the layers of autodev each layer may import, lazily or not
    "core": {"core"},
    "blocks": {"core", "blocks"},
    "tasks": {"core", "blocks", "tasks"},
    "flows": {"core", "blocks", "tasks", "flows"},
    "cli": set(LAYERS),
}
# The core is plain Python: models and rules. These clients belong to blocks/ and above.
NOT_IN_THE_CORE = {"prefect", "docker", "psycopg", "git", "litellm", "typer", "rich", "prometheus_client", "httpx", "requests"}
SOURCE = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(path: Path) -> str:
    """The layer a source file belongs to (a module at the package's top: `autodev` itself)."""
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else "autodev"


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at its top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return found


def test_each_layer_imports_only_the_layers_below_it():
    wrong = []
    for path in SOURCE:
        layer = layer_of(path)
        for name in imports_of(path):
            parts = name.split(".")
            imported = parts[1] if parts[0] == "autodev" and len(parts) > 1 else None
            if imported in LAYERS and imported not in MAY_IMPORT.get(layer, {"core"}):
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
            if layer == "core" and parts[0] in NOT_IN_THE_CORE:
                wrong.append(f"{path.relative_to(ROOT)} (the core) imports {name}")
    assert not wrong, "\n".join(wrong)


def test_there_is_no_import_cycle_lazy_imports_included():
    modules = {module_name(path): path for path in SOURCE}
    graph = {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}
    cycles = []
    state: dict[str, str] = {}  # visiting | done

    def visit(name: str, path: list[str]) -> None:
        state[name] = "visiting"
        for dep in sorted(graph[name]):
            if state.get(dep) == "visiting":
                cycles.append(" -> ".join(path[path.index(dep):] + [dep]) if dep in path else f"{name} -> {dep}")
            elif dep not in state:
                visit(dep, [*path, dep])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "\n".join(cycles)


MAX_LINES, MAX_FUNCTION_LINES = 350, 40


def test_no_file_over_350_lines_and_no_function_over_40():
    too_long = []
    for path in [*SOURCE, *sorted((ROOT / "benchmarks").glob("*.py")), *sorted((ROOT / "tests").glob("*.py"))]:
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= MAX_FUNCTION_LINES:
                too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not too_long, "\n".join(too_long)


def test_the_run_engine_decides_without_prefect_docker_or_a_database():
    for path in [*sorted((PACKAGE / "core" / "engine").glob("*.py")), PACKAGE / "core" / "recovery.py", PACKAGE / "core" / "diagnosis.py"]:
        imported = imports_of(path)
        assert {m.split(".")[1] for m in imported if m.startswith("autodev.")} <= {"core"}, path.name
        assert not {m.split(".")[0] for m in imported} & NOT_IN_THE_CORE, path.name


def test_the_settings_are_read_in_one_place():
    """One composition root (`autodev/flows/runtime.py`): nothing else reads the settings."""
    readers = [
        str(path.relative_to(ROOT)) for path in SOURCE
        if any(isinstance(node, ast.Call) and getattr(node.func, "id", None) == "load_settings" for node in ast.walk(ast.parse(path.read_text())))
    ]  # fmt: skip
    assert readers == ["src/autodev/flows/runtime.py"]


def test_the_testing_module_runs_the_loop_the_flow_runs():
    """The engine's tests drive the one loop (`autodev/core/engine/loop.py`) with a scripted executor."""
    assert "RunLoop" in {name.split(".")[-1] for name in imports_of(PACKAGE / "testing.py")}
    assert "RunLoop" in {name.split(".")[-1] for name in imports_of(PACKAGE / "flows" / "plan_flow.py")}


def test_mypy_finds_nothing_in_the_package():
    """The type checker, configured in pyproject.toml, on src/autodev."""
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--quiet", str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
