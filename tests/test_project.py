"""Project files that users and Prefect read: prefect.yaml entrypoints, the sample plan."""

from pathlib import Path

import yaml
from prefect import Flow
from prefect.utilities.importtools import import_object

from autodev.plan import load_plan

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
