"""The operator's files: Prometheus config and alert rules (promtool), the Grafana dashboard."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from autodev.blocks.store import StateStore
from autodev.cli.exporter import StoreCollector
from autodev.core.plan import parse_plan

OPS = Path(__file__).resolve().parents[1] / "ops"


def promtool(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is missing: apt-get install prometheus (scripts/test.sh does)")
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=OPS)


def test_prometheus_config_is_valid():
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_fire_as_their_unit_tests_say():
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def exported_names(tmp_path) -> set[str]:
    store = StateStore(database_url=f"sqlite:///{tmp_path / 's.db'}").connect()
    store.sessions.create(uuid.uuid4().hex, parse_plan("project: p\nsteps: [{id: a, run: 'true'}]"), "/tmp", None)
    names = set()
    for family in StoreCollector(store).collect():
        names |= {sample.name for sample in family.samples} | {family.name}
    store.close()
    return names | {f"{n}_total" for n in names} | {f"{n}_bucket" for n in names}


def test_every_dashboard_and_alert_query_uses_metrics_the_exporter_serves(tmp_path):
    served = exported_names(tmp_path)
    dashboard = json.loads((OPS / "grafana" / "autodev-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += re.findall(r"expr: (.+)", (OPS / "alerts.yml").read_text())
    for expr in exprs:
        for name in re.findall(r"\b(orchestrator_[a-z_]+)", expr):
            assert name in served, f"{name} (in {expr!r}) is not exported"


def test_the_heartbeat_panel_turns_red_at_90_seconds():
    dashboard = json.loads((OPS / "grafana" / "autodev-dashboard.json").read_text())
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    heartbeat = [p for p in dashboard["panels"] if "orchestrator_heartbeat_age_seconds" in p["targets"][0]["expr"]]
    assert heartbeat
    for panel in heartbeat:
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert {"color": "red", "value": 90} in steps and panel["fieldConfig"]["defaults"]["unit"] == "s"
