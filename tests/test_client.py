"""The typed Python client against a real server (and against an in-process app)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import httpx
import pytest
from fastapi.testclient import TestClient

from app.client import (
    ClassificationRow,
    McdropClient,
    McdropClientError,
    ModelInfo,
    RegressionRow,
)
from tests.support import BUNDLED_MODEL_NAMES, free_port, serve_in_thread

DIGIT_ROWS = [[0.0] * 64, [8.0] * 64]


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with serve_in_thread() as url:
        yield url


@pytest.fixture
def client(server_url: str) -> Iterator[McdropClient]:
    with McdropClient(server_url) as client:
        yield client


def test_models_are_typed_summaries(client: McdropClient) -> None:
    assert client.ready()
    models = {model.name: model for model in client.models()}
    assert set(models) == BUNDLED_MODEL_NAMES
    cnn = models["digits-cnn"]
    assert isinstance(cnn, ModelInfo) and cnn.ready and cnn.error is None
    assert (cnn.task, cnn.input_shape, cnn.dropout_layers) == ("classification", [1, 8, 8], 1)
    assert cnn.labels == [str(i) for i in range(10)] and cnn.max_n_samples == 2000
    assert client.model("diabetes-mlp").task == "regression"


def test_classification_prediction(client: McdropClient, server_url: str) -> None:
    result = client.predict("digits-mlp", DIGIT_ROWS, n_samples=30, seed=4, ci_level=0.8)
    assert (result.model, result.version, result.task) == ("digits-mlp", "1", "classification")
    assert (result.n_samples, result.seed, result.ci_level) == (30, 4, 0.8)
    assert len(result.predictions) == 2 and all(
        isinstance(r, ClassificationRow) for r in result.predictions
    )
    body = {"inputs": DIGIT_ROWS, "n_samples": 30, "seed": 4, "ci_level": 0.8}
    raw = httpx.post(f"{server_url}/v1/models/digits-mlp/predict", json=body).json()
    first = result.predictions[0]
    assert isinstance(first, ClassificationRow)
    assert first.mean == raw["predictions"][0]["mean"]
    assert first.mutual_information == raw["predictions"][0]["mutual_information"]
    assert first.label == str(first.predicted_class)


def test_regression_prediction(client: McdropClient) -> None:
    result = client.predict("diabetes-mlp", [[0.0] * 10], n_samples=20, seed=0)
    row = result.predictions[0]
    assert isinstance(row, RegressionRow) and result.task == "regression"
    assert row.pi_lower[0] < row.ci_lower[0] <= row.mean[0] <= row.ci_upper[0] < row.pi_upper[0]


@pytest.mark.parametrize(
    ("call", "status", "message"),
    [
        (lambda c: c.model("nope"), 404, "model 'nope' not found"),
        (lambda c: c.predict("nope", [[1.0]]), 404, "model 'nope' not found"),
        (
            lambda c: c.predict("digits-mlp", [[0.0] * 64], n_samples=5000),
            422,
            "n_samples: 5000 exceeds this model's maximum of 2000",
        ),
        (lambda c: c.predict("digits-mlp", [[1.0, 2.0]]), 422, "inputs[0]: has shape [2]"),
    ],
)
def test_server_errors_raise_with_status_and_message(
    client: McdropClient, call: Callable[[McdropClient], object], status: int, message: str
) -> None:
    with pytest.raises(McdropClientError) as caught:
        call(client)
    assert caught.value.status == status
    assert message in caught.value.message


def test_unreachable_server() -> None:
    client = McdropClient(f"http://127.0.0.1:{free_port()}", timeout=2)
    with client, pytest.raises(McdropClientError) as caught:
        client.models()
    assert caught.value.status is None and "cannot reach mcdrop" in caught.value.message


def test_broken_model_is_listed_with_its_error(
    model_factory: Callable[..., Path], client_for: Callable[..., TestClient]
) -> None:
    folder = model_factory("good")
    model_factory("broken", kwargs={"p": 0.0})
    # starlette's TestClient is an httpx2 client when httpx2 is installed (huggingface-hub
    # brings it): the same interface, another class.
    client = McdropClient(http=cast(httpx.Client, client_for(folder.parent)))
    models = {model.name: model for model in client.models()}
    assert models["good"].ready and models["good"].version == "3"
    assert not models["broken"].ready and "p = 0" in (models["broken"].error or "")
    with pytest.raises(McdropClientError) as caught:
        client.predict("broken", [[1.0, 2.0]])
    assert caught.value.status == 503


def test_api_key_is_sent_as_a_bearer_token(client_for: Callable[..., TestClient]) -> None:
    app = client_for(api_keys=["k"])
    with pytest.raises(McdropClientError) as refused:
        McdropClient("http://mcdrop.test", http=cast(httpx.Client, app)).models()
    assert refused.value.status == 401
    keyed = McdropClient("http://mcdrop.test", http=cast(httpx.Client, app), api_key="k")
    assert {model.name for model in keyed.models()} == BUNDLED_MODEL_NAMES


def test_evaluate_returns_the_servers_report(client_for: Callable[..., TestClient]) -> None:
    client = McdropClient("http://mcdrop.test", http=cast(httpx.Client, client_for()))
    targets = [3.0, 1.0]
    report = client.evaluate("diabetes-mlp", [[0.0] * 10, [0.5] * 10], targets, n_samples=8, seed=0)
    assert (report.model, report.rows, report.n_samples, report.seed) == ("diabetes-mlp", 2, 8, 0)
    assert report.regression is not None and report.classification is None
    with pytest.raises(McdropClientError) as refused:
        client.evaluate("diabetes-mlp", [[0.0] * 10], ["x"])
    assert refused.value.status == 422
