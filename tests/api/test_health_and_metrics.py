from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from tests.support import metric_value as _sample


def test_live_and_ready(demo_client: TestClient) -> None:
    assert demo_client.get("/v2/health/live").json() == {"live": True}
    ready = demo_client.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    assert demo_client.get("/v2/models/digits-mlp/ready").status_code == 200
    assert demo_client.get("/v2/models/nope/ready").status_code == 404


def test_not_ready_without_models(tmp_path: Path, client_for: Callable[..., TestClient]) -> None:
    client = client_for(tmp_path)
    response = client.get("/v2/health/ready")
    assert response.status_code == 503
    assert response.json() == {"ready": False, "reason": "no model could be loaded"}
    assert client.get("/v2/health/live").status_code == 200


def test_broken_model_is_not_ready_with_its_reason(
    model_factory: Callable[..., Path], client_for: Callable[..., TestClient]
) -> None:
    folder = model_factory("good")
    model_factory("broken", kwargs={"p": 0.0})
    client = client_for(folder.parent)
    assert client.get("/v2/health/ready").status_code == 200
    broken = client.get("/v2/models/broken/ready")
    assert broken.status_code == 503 and "p = 0" in broken.json()["reason"]
    predict = client.post("/v1/models/broken/predict", json={"inputs": [[1, 2]]})
    assert predict.status_code == 503 and "p = 0" in predict.json()["error"]
    listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert listed["broken"]["ready"] is False and "p = 0" in listed["broken"]["error"]


def test_metrics_move_after_requests(demo_client: TestClient) -> None:
    before = demo_client.get("/metrics").text
    ok = {"inputs": [[0] * 64, [1] * 64], "n_samples": 25, "seed": 1}
    assert demo_client.post("/v1/models/digits-mlp/predict", json=ok).status_code == 200
    bad = {"inputs": [[0] * 3]}
    assert demo_client.post("/v1/models/digits-mlp/predict", json=bad).status_code == 422
    demo_client.post("/v1/models/unknown-x/predict", json=ok)
    assert demo_client.post("/v1/models/digits-mlp/predict", json={}).status_code == 422
    response = demo_client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text
    model = {"model": "digits-mlp"}
    ok_labels = {**model, "endpoint": "v1_predict", "outcome": "success"}
    bad_labels = {**model, "endpoint": "v1_predict", "outcome": "client_error"}
    total = "mcdrop_requests_total"
    assert _sample(after, total, ok_labels) == _sample(before, total, ok_labels) + 1
    assert _sample(after, total, bad_labels) == _sample(before, total, bad_labels) + 2
    assert _sample(after, total, {"model": "_unknown", "outcome": "client_error"}) == 1
    assert "unknown-x" not in after
    assert _sample(after, "mcdrop_samples_per_request_sum", model) == 25
    assert _sample(after, "mcdrop_request_duration_seconds_count", model) == 1
    assert _sample(after, "mcdrop_predictive_entropy_count", model) == 2
    assert _sample(after, "mcdrop_mutual_information_count", model) == 2
    assert _sample(after, "mcdrop_model_ready", model) == 1
    assert _sample(after, "mcdrop_inflight_requests", model) == 0
