"""deploy/docker-compose.yml, Prometheus's configuration and Grafana's provisioning: they fit
together, and every query uses metrics mcdrop really exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.dockerfile import read_stages
from tests.support import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
_METRIC = re.compile(r"\bmcdrop_[a-z_]+\b")
_SUFFIXES = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = _yaml(DEPLOY / "docker-compose.yml")
    return compose


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((GRAFANA / "dashboards" / "mcdrop.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def _alert_exprs() -> list[str]:
    groups = _yaml(PROMETHEUS / "alerts.yml")["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path (relative to deploy/) of each bind mount."""
    mounts = {}
    for volume in service["volumes"]:
        host, container = volume.split(":")[:2]
        mounts[container] = (DEPLOY / host).resolve()
    return mounts


def test_compose_runs_mcdrop_prometheus_and_grafana() -> None:
    services = _compose()["services"]
    assert set(services) == {"mcdrop", "prometheus", "grafana"}
    mcdrop = services["mcdrop"]
    assert (DEPLOY / mcdrop["build"]["context"]).resolve() == REPO_ROOT
    assert (REPO_ROOT / mcdrop["build"]["dockerfile"]).is_file()
    runtime = read_stages(REPO_ROOT / "Dockerfile")[-1].env()
    assert mcdrop["ports"] == [f"{runtime['MCDROP_PORT']}:{runtime['MCDROP_PORT']}"]
    assert _mounts(mcdrop)[runtime["MCDROP_MODELS_DIR"]] == REPO_ROOT / "models"
    assert all(key.startswith("MCDROP_") for key in mcdrop["environment"])
    # Published on every interface: compose refuses to start without keys (${VAR:?message}).
    assert mcdrop["environment"]["MCDROP_API_KEYS"].startswith("${MCDROP_API_KEYS:?")
    for service in services.values():
        for host in _mounts(service).values() if "volumes" in service else []:
            assert host.exists(), host
    assert services["prometheus"]["depends_on"]["mcdrop"]["condition"] == "service_healthy"


def test_prometheus_scrapes_the_mcdrop_service() -> None:
    prometheus = _compose()["services"]["prometheus"]
    config_flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    mounts = _mounts(prometheus)
    config_path = mounts[config_flag.split("=", 1)[1]]
    config = _yaml(config_path)
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "mcdrop")
    assert job["metrics_path"] == "/metrics"
    port = read_stages(REPO_ROOT / "Dockerfile")[-1].env()["MCDROP_PORT"]
    assert job["static_configs"][0]["targets"] == [f"mcdrop:{port}"]
    for rule_file in config["rule_files"]:
        container_path = str(Path(config_flag.split("=", 1)[1]).parent / rule_file)
        assert mounts[container_path] == (config_path.parent / rule_file).resolve()


def test_grafana_is_provisioned_with_the_datasource_and_dashboard() -> None:
    grafana = _compose()["services"]["grafana"]
    mounts = _mounts(grafana)
    provisioning = mounts["/etc/grafana/provisioning"]
    datasource = _yaml(provisioning / "datasources" / "prometheus.yml")["datasources"][0]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    provider = _yaml(provisioning / "dashboards" / "mcdrop.yml")["providers"][0]
    dashboards = mounts[provider["options"]["path"]]
    dashboard = json.loads((dashboards / "mcdrop.json").read_text())
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for wanted in ("throughput", "p50 / p95 / p99", "mutual information", "entropy", "std"):
        assert wanted in titles
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert uids == {datasource["uid"]}


def test_queries_use_only_metrics_mcdrop_exports(demo_client: TestClient) -> None:
    text = demo_client.get("/metrics").text
    exported = {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in _SUFFIXES.get(family.type, [""])
    }
    used = {name for expr in _dashboard_exprs() + _alert_exprs() for name in _METRIC.findall(expr)}
    assert used, "the queries name mcdrop metrics"
    assert used <= exported, used - exported
    for drift in ("mcdrop_predictive_entropy_bucket", "mcdrop_mutual_information_bucket"):
        assert drift in used


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_config_rules_and_dashboard_queries(tmp_path: Path) -> None:
    config = subprocess.run(
        ["promtool", "check", "config", str(PROMETHEUS / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert config.returncode == 0, config.stdout + config.stderr
    # The dashboard's queries, Grafana variables filled in, as recording rules promtool parses.
    grafana_vars = {"$__rate_interval": "5m", "$model": ".*"}
    rules = []
    for index, expr in enumerate(_dashboard_exprs()):
        for variable, value in grafana_vars.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:query_{index}", "expr": expr})
    dashboard_rules = tmp_path / "dashboard.yml"
    dashboard_rules.write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": rules}]}))
    for path in (PROMETHEUS / "alerts.yml", dashboard_rules):
        checked = subprocess.run(
            ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
