"""Requirements documents, templates and the scaffold: rendering, TODO markers, path traversal,
the first commit."""

from __future__ import annotations

import git
import pytest

from autodev.core.errors import BadInput
from autodev.core.scaffold import (
    TODO_MARKER,
    choose_template,
    find_todos,
    load_manifest,
    manual_guidance,
    parse_requirements,
    render_template,
    safe_relative_path,
    todo_files_in,
)

WEATHER = "---\nproject: weather-bot\ntemplate: weather-bot\nvariables: {city: Oslo}\n---\n# Weather Bot\n\n- fetch a forecast\n"


def test_front_matter_names_project_template_and_variables():
    wanted = parse_requirements(WEATHER, "req.md")
    assert (wanted.project, wanted.template, wanted.variables) == ("weather-bot", "weather-bot", {"city": "Oslo"})
    assert wanted.text.startswith("# Weather Bot")


def test_an_empty_front_matter_is_not_left_in_the_text():
    assert parse_requirements("---\n---\n# Weather Bot\n").text == "# Weather Bot\n"


def test_without_front_matter_the_title_names_the_project_and_keywords_impose_no_template():
    wanted = parse_requirements("# My Forecast Bot\n\nA bot that posts the weather forecast every morning.\n")
    assert wanted.project == "my-forecast-bot"
    choice = choose_template(wanted)  # words shared with weather-bot do not bring in its tests
    assert choice.manifest.name == "python-package" and "no template is named" in choice.reason
    assert choose_template(wanted, "weather-bot").manifest.name == "weather-bot"


@pytest.mark.parametrize(
    "text, message",
    [
        ("---\nproject: [\n---\n# x\n", "front matter is not valid YAML"),
        ("---\nprojekt: x\n---\n# x\n", "unknown front matter key(s) projekt"),
        ("---\nproject: x\n---\n   \n", "requirements document is empty"),
        ("---\nproject: Weather Bot\n---\n# x\n", "front matter `project` 'Weather Bot': use letters, digits"),
        ("---\nproject: ../../up\n---\n# x\n", "front matter `project` '../../up'"),
        ("---\nvariables: [a, b]\n---\n# x\n", "`variables` must be a mapping"),
    ],
)
def test_bad_requirements_name_the_problem(text, message):
    with pytest.raises(BadInput, match="req.md") as info:
        parse_requirements(text, "req.md")
    assert message in str(info.value)


def test_an_unknown_template_lists_the_templates_and_no_match_is_never_refused():
    with pytest.raises(BadInput, match="no template 'nope'; templates here: .*weather-bot"):
        choose_template(parse_requirements("---\ntemplate: nope\n---\n# x\n"))
    wanted = parse_requirements("# Quantum annealer\n\nSchedules qubits.\n")
    choice = choose_template(wanted)
    files = render_template(choice.manifest, wanted.variables, project=wanted.project)
    assert sorted(files) == ["pyproject.toml", "quantum_annealer/__init__.py", "tests/__init__.py"]
    assert 'name = "quantum-annealer"' in files["pyproject.toml"] and "TODO(autodev)" in files["quantum_annealer/__init__.py"]


def test_weather_bot_renders_with_its_variables_and_todo_markers():
    manifest = load_manifest("weather-bot")
    files = render_template(manifest, {"city": "Oslo"})
    assert 'default="Oslo"' in files["weather_bot/bot.py"]
    assert sorted(find_todos(files)) == sorted(manifest.todo) == ["weather_bot/client.py", "weather_bot/message.py"]
    assert "tests/test_client.py" in files and TODO_MARKER not in files["tests/test_client.py"]
    with pytest.raises(BadInput, match="has no variable"):
        render_template(manifest, {"country": "NO"})


def _template(root, dest: str, src: str = "a.txt"):
    (root / "evil" / "files").mkdir(parents=True)
    (root / "evil" / "files" / "a.txt").write_text("hello {{ name }}\n")
    (root / "evil" / "manifest.yaml").write_text(
        "name: evil\ndescription: d\nvariables: {name: {default: x}}\n"
        f"files:\n  - {{src: '{src}', dest: '{dest}', render: true}}\nsteps:\n  - {{id: a, run: 'true'}}\n"
    )
    return load_manifest("evil", root)


@pytest.mark.parametrize(
    "dest, variables",
    [("../outside.txt", {}), ("/etc/passwd", {}), ("{{ name }}/x.txt", {"name": "../../up"}), (".git/hooks/post-commit", {})],
)
def test_paths_that_would_leave_the_workspace_are_refused(tmp_path, dest, variables):
    manifest = _template(tmp_path, dest)
    with pytest.raises(BadInput, match="would leave the workspace"):
        render_template(manifest, variables, tmp_path)


def test_a_source_outside_the_template_is_refused(tmp_path):
    manifest = _template(tmp_path, "a.txt", src="../../secret")
    with pytest.raises(BadInput, match="outside the template's files/"):
        render_template(manifest, {}, tmp_path)


def test_safe_paths_are_normalised():
    assert safe_relative_path("pkg/./mod.py") == "pkg/mod.py"


def test_manual_guidance_lists_todos_and_requirements():
    wanted = parse_requirements(WEATHER)
    manifest = load_manifest("weather-bot")
    text = manual_guidance(wanted, manifest, render_template(manifest, {}), "no model is configured")
    assert "no model is configured" in text
    assert "- [ ] `weather_bot/client.py` line" in text and "- [ ] fetch a forecast" in text


def test_scaffold_writes_the_files_and_makes_the_first_commit(prefect_api, tmp_path):
    from autodev.tasks.scaffold import scaffold

    manifest = load_manifest("weather-bot")
    files = render_template(manifest, {})
    workspace = tmp_path / "ws"
    sha = scaffold(str(workspace), parse_requirements(WEATHER), manifest.name, files)
    repo = git.Repo(workspace)
    assert repo.head.commit.hexsha == sha and repo.head.commit.message.startswith("scaffold weather-bot")
    assert not repo.is_dirty(untracked_files=True)
    assert (workspace / "REQUIREMENTS.md").read_text().startswith("# Weather Bot")
    assert todo_files_in(workspace) == ["weather_bot/client.py", "weather_bot/message.py"]
    with pytest.raises(BadInput, match="is not empty"):  # nothing is overwritten
        scaffold(str(workspace), parse_requirements(WEATHER), manifest.name, files)
