from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from sklearn.datasets import load_digits

from app.engine.predictor import PredictionRequest
from app.engine.stats import RegressionStats
from app.registry.loading import load_model_folder
from tests.support import BUNDLED_MODEL_NAMES, numbers_of

DIGITS = load_digits()


def _digit_rows(count: int, flat: bool = True) -> list[Any]:
    images = DIGITS.images[:count]
    return [img.reshape(-1).tolist() if flat else [img.tolist()] for img in images]


def test_lists_models_with_their_metadata(demo_client: TestClient) -> None:
    response = demo_client.get("/v1/models")
    assert response.status_code == 200
    models = {m["name"]: m for m in response.json()["models"]}
    assert set(models) == BUNDLED_MODEL_NAMES
    mlp = models["digits-mlp"]
    assert mlp["task"] == "classification" and mlp["input_shape"] == [64]
    assert mlp["labels"] == [str(i) for i in range(10)]
    assert mlp["dropout_layers"] == 2 and mlp["ready"] is True
    assert models["digits-cnn"]["input_shape"] == [1, 8, 8]
    assert models["diabetes-mlp"]["task"] == "regression"
    cnn = demo_client.get("/v1/models/digits-cnn").json()
    assert cnn["dropout_layers"] == 1
    # everything but the last linear layer runs once per row
    assert cnn["prefix_fraction"] > 0.95 and cnn["prefix_note"].startswith("torch.fx split")


def test_classification_prediction_fields(demo_client: TestClient) -> None:
    body = {"inputs": _digit_rows(3), "n_samples": 50, "seed": 7, "ci_level": 0.9}
    response = demo_client.post("/v1/models/digits-mlp/predict", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert (data["model"], data["version"], data["task"]) == ("digits-mlp", "1", "classification")
    assert (data["n_samples"], data["seed"], data["ci_level"]) == (50, 7, 0.9)
    assert len(data["predictions"]) == 3
    for row, target in zip(data["predictions"], DIGITS.target[:3], strict=True):
        assert row["predicted_class"] == target and row["label"] == str(target)
        assert math.isclose(sum(row["mean"]), 1.0, rel_tol=1e-5)
        assert row["confidence"] == max(row["mean"])
        assert row["mutual_information"] >= 0
        assert math.isclose(
            row["predictive_entropy"],
            row["expected_entropy"] + row["mutual_information"],
            rel_tol=1e-4,
            abs_tol=1e-6,
        )
        assert all(lo <= hi for lo, hi in zip(row["ci_lower"], row["ci_upper"], strict=True))
        assert "samples" not in row


def test_cnn_takes_image_shaped_rows(demo_client: TestClient) -> None:
    body = {"inputs": _digit_rows(4, flat=False), "n_samples": 30, "seed": 1}
    response = demo_client.post("/v1/models/digits-cnn/predict", json=body)
    assert response.status_code == 200, response.text
    classes = [row["predicted_class"] for row in response.json()["predictions"]]
    assert classes == DIGITS.target[:4].tolist()


def test_http_numbers_equal_the_engine_numbers(
    model_factory: Callable[..., Path], client_for: Callable[..., TestClient]
) -> None:
    folder = model_factory("tiny-reg", task="regression")
    client = client_for(folder.parent)
    body = {"inputs": [[1.0, 2.0]], "n_samples": 64, "seed": 11, "return_samples": True}
    row = client.post("/v1/models/tiny-reg/predict", json=body).json()["predictions"][0]
    engine = load_model_folder(folder).predictor.predict(
        PredictionRequest(torch.tensor([[1.0, 2.0]]), n_samples=64, ci_level=0.95, seed=11)
    )
    assert isinstance(engine.stats, RegressionStats)
    assert row["mean"] == engine.stats.mean[0].tolist()
    assert row["pi_lower"] == engine.stats.pi_lower[0].tolist()
    samples = torch.tensor(row["samples"])  # (N, D)
    assert samples.shape == (64, 2)
    torch.testing.assert_close(samples.mean(0), torch.tensor(row["mean"]))
    torch.testing.assert_close(
        samples.var(0, correction=0), torch.tensor(row["epistemic_variance"])
    )
    assert row["aleatoric_variance"] == [0.25, 0.25]
    torch.testing.assert_close(
        torch.tensor(row["variance"]), torch.tensor(row["epistemic_variance"]) + 0.25
    )
    for lo, ci_lo, mean, ci_hi, hi in zip(
        row["pi_lower"], row["ci_lower"], row["mean"], row["ci_upper"], row["pi_upper"], strict=True
    ):
        assert lo < ci_lo <= mean <= ci_hi < hi


def test_same_seed_same_numbers(demo_client: TestClient) -> None:
    body = {"inputs": _digit_rows(2), "n_samples": 40, "seed": 3}
    first = demo_client.post("/v1/models/digits-mlp/predict", json=body).json()
    second = demo_client.post("/v1/models/digits-mlp/predict", json=body).json()
    other = demo_client.post("/v1/models/digits-mlp/predict", json={**body, "seed": 4}).json()
    assert numbers_of(first) == numbers_of(second)
    assert first["predictions"] != other["predictions"]
    unseeded = demo_client.post("/v1/models/digits-mlp/predict", json={"inputs": _digit_rows(1)})
    assert unseeded.status_code == 200 and unseeded.json()["n_samples"] == 100


def test_regression_prediction(demo_client: TestClient) -> None:
    row = [0.038, 0.05, 0.062, 0.022, -0.044, -0.035, -0.043, -0.003, 0.02, -0.018]
    response = demo_client.post(
        "/v1/models/diabetes-mlp/predict", json={"inputs": [row], "n_samples": 100, "seed": 1}
    )
    assert response.status_code == 200, response.text
    pred = response.json()["predictions"][0]
    assert set(pred) == {
        "mean", "epistemic_variance", "aleatoric_variance", "variance", "std",
        "ci_lower", "ci_upper", "pi_lower", "pi_upper",
    }  # fmt: skip
    assert 25 < pred["mean"][0] < 346  # the diabetes target's range
    assert math.isclose(pred["std"][0] ** 2, pred["variance"][0], rel_tol=1e-5)


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/v1/models/nope/predict", {"inputs": [[0] * 64]}, 404, "model 'nope' not found"),
        ("/v1/models/digits-mlp/predict", {}, 422, "inputs: Field required"),
        ("/v1/models/digits-mlp/predict", {"inputs": []}, 422, "inputs:"),
        ("/v1/models/digits-mlp/predict", {"inputs": [[1, 2, 3]]}, 422, "inputs[0]: has shape [3]"),
        ("/v1/models/digits-mlp/predict", {"inputs": [[0] * 64], "n_samples": 0}, 422, "n_samples"),
        (
            "/v1/models/digits-mlp/predict",
            {"inputs": [[0] * 64], "n_samples": 2001},
            422,
            "n_samples: 2001 exceeds this model's maximum of 2000",
        ),
        ("/v1/models/digits-mlp/predict", {"inputs": [[0] * 64], "ci_level": 1.5}, 422, "ci_level"),
        ("/v1/models/digits-mlp/predict", {"inputs": [[0] * 64], "nsamples": 5}, 422, "nsamples"),
        ("/v1/models/digits-mlp/predict", {"inputs": "abc"}, 422, "inputs"),
    ],
)
def test_bad_requests_get_the_error_envelope(
    demo_client: TestClient, path: str, body: dict[str, Any], status: int, fragment: str
) -> None:
    response = demo_client.post(path, json=body)
    assert response.status_code == status
    assert set(response.json()) == {"error", "request_id"}
    assert response.json()["request_id"] == response.headers["x-request-id"]
    assert fragment in response.json()["error"]


def test_malformed_json_is_a_422(demo_client: TestClient) -> None:
    response = demo_client.post(
        "/v1/models/digits-mlp/predict",
        content=b'{"inputs": [[1,',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert "JSON" in response.json()["error"]


def test_unknown_model_metadata_is_404(demo_client: TestClient) -> None:
    response = demo_client.get("/v1/models/nope")
    assert response.status_code == 404
    assert response.json()["error"] == "model 'nope' not found"


def test_too_many_rows(client_for: Callable[..., TestClient]) -> None:
    client = client_for(max_rows_per_request=2)
    response = client.post("/v1/models/digits-mlp/predict", json={"inputs": _digit_rows(3)})
    assert response.status_code == 422
    assert response.json()["error"] == "inputs: has 3 rows, more than the limit of 2"
