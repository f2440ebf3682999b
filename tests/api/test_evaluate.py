"""POST /v1/models/{name}/evaluate: metrics of labelled rows over HTTP."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from sklearn.datasets import load_digits

from app.api.schemas import EvaluateResponse
from app.engine.evaluation import evaluate, parse_targets
from app.engine.predictor import PredictionRequest
from app.registry.loading import load_model_folder
from tests.support import BUNDLED_MODELS, float32_line_and_classifier, metric_value

DIGITS = load_digits()
ROWS = DIGITS.data[:120].tolist()
LABELS = [str(d) for d in DIGITS.target[:120]]


def test_classification_metrics_equal_the_engine_run(demo_client: TestClient) -> None:
    body = {"inputs": ROWS, "targets": LABELS, "n_samples": 30, "seed": 5, "coverages": [0.5, 1]}
    response = demo_client.post("/v1/models/digits-mlp/evaluate", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert (data["model"], data["task"], data["rows"], data["seed"]) == (
        "digits-mlp",
        "classification",
        120,
        5,
    )
    assert data["regression"] is None
    report = data["classification"]
    assert [p["coverage"] for p in report["selective"]] == [0.5, 1.0]
    assert len(report["reliability"]) == 15 and len(report["risk_coverage"]["risk"]) == 100
    model = load_model_folder(BUNDLED_MODELS / "digits-mlp")
    request = PredictionRequest(torch.tensor(ROWS), n_samples=30, ci_level=0.95, seed=5)
    targets = parse_targets(LABELS, model.predictor.spec, model.card.labels, model.output_shape)
    engine = evaluate(model.predictor, request, targets, coverages=(0.5, 1.0))
    assert EvaluateResponse.model_validate(data).classification == engine.classification
    assert report["accuracy"] > 0.95


def test_regression_metrics(
    model_factory: Callable[..., Path], client_for: Callable[..., TestClient]
) -> None:
    client = client_for(model_factory("reg", task="regression", card={"target": "y"}).parent)
    assert client.get("/v1/models/reg").json()["target"] == "y"
    body = {"inputs": [[1, 2], [0, 0]], "targets": [[3, 5], [1, 1]], "seed": 0, "ci_level": 0.5}
    data = client.post("/v1/models/reg/evaluate", json=body).json()
    assert data["classification"] is None and data["n_samples"] == 20  # the card's default
    report = data["regression"]
    assert report["pi_level"] == 0.5 and set(report) >= {"rmse", "log_likelihood", "crps"}
    assert len(report["interval_calibration"]) == 11


def test_row_limit_is_the_evaluation_limit(client_for: Callable[..., TestClient]) -> None:
    client = client_for(max_rows_per_request=2, max_rows_per_evaluation=3)
    rows, labels = ROWS[:3], LABELS[:3]
    ok = client.post("/v1/models/digits-mlp/evaluate", json={"inputs": rows, "targets": labels})
    assert ok.status_code == 200
    body = {"inputs": ROWS[:4], "targets": LABELS[:4]}
    too_many = client.post("/v1/models/digits-mlp/evaluate", json=body)
    assert too_many.status_code == 422
    assert too_many.json()["error"] == "inputs: has 4 rows, more than the limit of 3"


def test_bad_targets_get_the_error_envelope(demo_client: TestClient) -> None:
    url = "/v1/models/digits-mlp/evaluate"
    short = demo_client.post(url, json={"inputs": ROWS[:3], "targets": LABELS[:2]})
    assert short.status_code == 422
    assert short.json()["error"] == "targets: has 2 entries for 3 input rows"
    unknown = demo_client.post(url, json={"inputs": ROWS[:2], "targets": ["1", "cat"]})
    assert unknown.status_code == 422 and unknown.json()["error"].startswith("targets[1]:")
    missing = demo_client.post(url, json={"inputs": ROWS[:2]})
    assert missing.status_code == 422 and "targets" in missing.json()["error"]
    coverage = demo_client.post(
        url, json={"inputs": ROWS[:2], "targets": LABELS[:2], "coverages": [0]}
    )
    assert coverage.status_code == 422 and "coverages" in coverage.json()["error"]
    absent = demo_client.post("/v1/models/nope/evaluate", json={"inputs": [[0]], "targets": [0]})
    assert absent.status_code == 404


def test_evaluations_are_counted_but_not_observed_as_traffic(demo_client: TestClient) -> None:
    body = {"inputs": ROWS[:10], "targets": LABELS[:10], "n_samples": 10}
    assert demo_client.post("/v1/models/digits-mlp/evaluate", json=body).status_code == 200
    text = demo_client.get("/metrics").text
    labels = {"model": "digits-mlp", "endpoint": "v1_evaluate", "outcome": "success"}
    assert metric_value(text, "mcdrop_requests_total", labels) == 1
    assert metric_value(text, "mcdrop_predictive_entropy_count", {"model": "digits-mlp"}) == 0


def test_overflowing_targets_and_inputs_are_refused_like_predict(
    model_factory: Callable[..., Path], client_for: Callable[..., TestClient]
) -> None:
    models_dir = float32_line_and_classifier(model_factory)
    client = client_for(models_dir)
    for target in (1e308, 1e200):
        body = {"inputs": [[0.0], [1.0]], "targets": [1.0, target], "seed": 0}
        answer = client.post("/v1/models/line/evaluate", json=body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"] == (
            "targets[1]: holds a value beyond the model's range (|x| <= 3.403e+38)"
        )
    for name, rows, targets in (
        ("line", [[0.0], [3e38]], [1.0, 1.0]),
        ("cls", [[0.0, 1.0], [3e38, 0.0]], [0, 1]),
    ):
        predicted = client.post(f"/v1/models/{name}/predict", json={"inputs": rows, "seed": 0})
        body = {"inputs": rows, "targets": targets, "seed": 0}
        evaluated = client.post(f"/v1/models/{name}/evaluate", json=body)
        assert predicted.status_code == evaluated.status_code == 422, evaluated.text
        assert evaluated.json()["error"] == predicted.json()["error"]
        assert evaluated.json()["error"].startswith("inputs[1]: the model's output")


def test_a_variance_head_that_underflows_to_zero_is_floored(
    model_factory: Callable[..., Path], client_for: Callable[..., TestClient]
) -> None:
    # TinyNet outputs (2 x0 + 1, 2 x1 + 1) = (mean, log variance) without dropout; at
    # x = (0, -100) every pass has mean 1 and log variance 1 (both units dropped) or -199 or
    # -399, whose exp is 0 in float32
    folder = model_factory("het", task="regression", card={"regression": {"variance_head": True}})
    client = client_for(folder.parent)
    body = {"inputs": [[0.0, -100.0]], "seed": 2, "n_samples": 40}
    row = client.post("/v1/models/het/predict", json=body).json()["predictions"][0]
    assert row["mean"] == [1.0]
    e_passes = round(row["aleatoric_variance"][0] * 40 / math.e)
    assert 0 < e_passes < 40 and row["aleatoric_variance"][0] == pytest.approx(
        e_passes * math.e / 40
    )
    answer = client.post("/v1/models/het/evaluate", json={**body, "targets": [1.0]})
    assert answer.status_code == 200, answer.text
    tiny = torch.finfo(torch.float32).tiny
    density = e_passes / math.sqrt(2 * math.pi * math.e) + (40 - e_passes) / math.sqrt(
        2 * math.pi * tiny
    )
    expected = math.log(density / 40)
    assert answer.json()["regression"]["log_likelihood"] == pytest.approx(expected, rel=1e-9)
