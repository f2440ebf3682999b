"""deploy/kubernetes: every manifest validated against the Kubernetes JSON schemas (strict: no
unknown fields) shipped by ``kubernetes-validate``, the custom resources structurally, and the
pieces checked against each other and against the image."""

from __future__ import annotations

from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from app import __version__
from app.config import Settings
from tests.deploy.dockerfile import read_stages
from tests.support import REPO_ROOT

K8S = REPO_ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30"
"""Oldest Kubernetes release the manifests must be valid for."""

_KSERVE_COMPONENT = {"minReplicas", "maxReplicas", "scaleMetric", "scaleTarget"}
_INFERENCE_SERVICE = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "serving.kserve.io/v1beta1"},
        "kind": {"const": "InferenceService"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["predictor"],
            "additionalProperties": False,
            "properties": {
                "predictor": {
                    "type": "object",
                    "required": ["containers"],
                    "properties": {
                        "minReplicas": {"type": "integer", "minimum": 0},
                        "maxReplicas": {"type": "integer", "minimum": 1},
                        "scaleMetric": {"enum": ["cpu", "memory", "concurrency", "rps"]},
                        "scaleTarget": {"type": "integer", "minimum": 1},
                        "containers": {"type": "array", "minItems": 1, "maxItems": 1},
                    },
                }
            },
        },
    },
}
_SERVICE_MONITOR = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "properties": {"matchLabels": {"type": "object"}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m)$"},
                        },
                    },
                },
            },
        },
    },
}


def _load(relative: str) -> dict[str, Any]:
    documents = list(yaml.safe_load_all((K8S / relative).read_text()))
    assert len(documents) == 1, relative
    document: dict[str, Any] = documents[0]
    return document


def _container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = pod_spec["containers"][0]
    return container


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container["env"]}


@pytest.mark.parametrize(
    "manifest", ["deployment.yaml", "service.yaml", "hpa.yaml", "models-pvc.yaml"]
)
def test_core_manifests_match_the_kubernetes_schemas(manifest: str) -> None:
    kubernetes_validate.validate(_load(manifest), KUBERNETES_VERSION, strict=True)


def test_the_validator_catches_a_wrong_field() -> None:
    broken = _load("deployment.yaml")
    _container(broken["spec"]["template"]["spec"])["livenessProbe"]["httpGet"]["paht"] = "/x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_core_manifest() -> None:
    kustomization = _load("kustomization.yaml")
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_deployment_runs_the_image_safely_with_probes_and_models_volume() -> None:
    deployment = _load("deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    container = _container(pod)
    assert container["image"] == f"mcdrop:{__version__}"
    runtime = read_stages(REPO_ROOT / "Dockerfile")[-1]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == runtime.all("USER")[-1].arguments
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    http = next(p for p in container["ports"] if p["name"] == "http")
    assert str(http["containerPort"]) == runtime.env()["MCDROP_PORT"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert {"requests", "limits"} <= set(container["resources"])
    env = _env(container)
    assert {key.removeprefix("MCDROP_").lower() for key in env} <= set(Settings.model_fields)
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert (
        mounts["models"]["mountPath"] == env["MCDROP_MODELS_DIR"] and mounts["models"]["readOnly"]
    )
    volumes = {v["name"]: v for v in pod["volumes"]}
    claim = volumes["models"]["persistentVolumeClaim"]["claimName"]
    assert claim == _load("models-pvc.yaml")["metadata"]["name"]
    assert "/tmp" in {m["mountPath"] for m in mounts.values()}, "a writable /tmp"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(http["containerPort"])


def _requires_keys_from_a_secret(pod: dict[str, Any]) -> None:
    """Keys required, read from a file in a mounted Secret the pod cannot start without."""
    container = _container(pod)
    env = _env(container)
    assert env["MCDROP_REQUIRE_AUTH"] == "true"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    (name,) = [n for n, v in volumes.items() if "secret" in v]
    secret = volumes[name]["secret"]
    assert secret["optional"] is False and secret["secretName"] == "mcdrop-api-keys"
    assert secret["defaultMode"] & 0o040, "group-readable: the pod runs as its fsGroup"
    assert mounts[name]["readOnly"] is True
    assert env["MCDROP_API_KEY_FILE"].startswith(mounts[name]["mountPath"] + "/")
    assert Settings(require_auth=True, api_key_file=env["MCDROP_API_KEY_FILE"]).require_auth


def test_deployment_and_kserve_require_auth_from_a_secret() -> None:
    _requires_keys_from_a_secret(_load("deployment.yaml")["spec"]["template"]["spec"])
    _requires_keys_from_a_secret(_load("kserve/inferenceservice.yaml")["spec"]["predictor"])


def test_service_hpa_and_service_monitor_point_at_the_deployment() -> None:
    deployment = _load("deployment.yaml")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = _load("service.yaml")
    assert service["spec"]["selector"].items() <= labels.items()
    port_names = {p["name"] for p in _container(deployment["spec"]["template"]["spec"])["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    target = _load("hpa.yaml")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    monitor = _load("monitoring/servicemonitor.yaml")
    jsonschema.validate(monitor, _SERVICE_MONITOR)
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= service_ports
    assert {e["path"] for e in monitor["spec"]["endpoints"]} == {"/metrics"}


def test_kserve_inference_service_is_a_custom_v2_predictor() -> None:
    service = _load("kserve/inferenceservice.yaml")
    jsonschema.validate(service, _INFERENCE_SERVICE)
    predictor = dict(service["spec"]["predictor"])
    # The rest of the predictor is a Kubernetes PodSpec: validate it as one, strictly.
    pod_spec = {k: v for k, v in predictor.items() if k not in _KSERVE_COMPONENT}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": pod_spec}
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    container = _container(pod_spec)
    assert container["name"] == "kserve-container" and container["image"] == f"mcdrop:{__version__}"
    assert [p["containerPort"] for p in container["ports"]] == [8080]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    env = _env(container)
    assert env["MCDROP_MODELS_DIR"] == "/mnt/models" and env["STORAGE_URI"]
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
