"""The live-coverage panel and alert: they read the feedback metrics the way the server writes
them (the metric names themselves are checked against /metrics in test_compose)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _panels() -> dict[str, dict[str, Any]]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "mcdrop.json").read_text())
    return {panel["title"]: panel for panel in dashboard["panels"]}


def test_coverage_panel_sets_coverage_against_the_nominal_level() -> None:
    panel = _panels()["Interval coverage on live traffic vs nominal level"]
    coverage, nominal = (target["expr"] for target in panel["targets"])
    assert "mcdrop_interval_covered_total" in coverage.split(" / ")[0]
    assert "mcdrop_interval_checked_total" in coverage.split(" / ")[1]
    assert "mcdrop_interval_nominal_total" in nominal.split(" / ")[0]
    assert all("by (model, interval)" in expr for expr in (coverage, nominal))
    ids = [panel["id"] for panel in _panels().values()]
    assert len(ids) == len(set(ids))


def test_undercoverage_alert_compares_coverage_with_the_level() -> None:
    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    rules = {rule["alert"]: rule for group in groups for rule in group["rules"]}
    expr = rules["McdropIntervalUndercoverage"]["expr"]
    covered, nominal = expr.split(" < ")
    assert "mcdrop_interval_covered_total" in covered and "mcdrop_interval_checked_total" in covered
    assert "mcdrop_interval_nominal_total" in nominal and "- 0.05" in nominal
    assert ">= 200" in nominal  # no alert on a handful of labels
    assert (
        "{{ $labels.interval }}" in rules["McdropIntervalUndercoverage"]["annotations"]["summary"]
    )
