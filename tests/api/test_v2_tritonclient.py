"""The v2 API spoken by a real third-party client: Triton's ``tritonclient.http`` against a real
uvicorn server on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as triton
from sklearn.datasets import load_digits
from tritonclient.utils import InferenceServerException

from tests.support import serve_in_thread

DIGITS = load_digits()
PIXELS = DIGITS.images[:4].reshape(4, 64).astype(np.float32)


@pytest.fixture(scope="module")
def client() -> Iterator[triton.InferenceServerClient]:
    with serve_in_thread() as base_url:
        client = triton.InferenceServerClient(url=base_url.removeprefix("http://"))
        yield client
        client.close()


def _infer(
    client: triton.InferenceServerClient,
    binary: bool,
    outputs: list[str] | None = None,
    model_version: str = "",
) -> triton.InferResult:
    tensor = triton.InferInput("input", list(PIXELS.shape), "FP32")
    tensor.set_data_from_numpy(PIXELS, binary_data=binary)
    requested = [triton.InferRequestedOutput(name, binary_data=binary) for name in outputs or []]
    return client.infer(
        "digits-mlp",
        [tensor],
        model_version=model_version,
        outputs=requested or None,
        request_id="triton-1",
        parameters={"n_samples": 30, "seed": 9},
    )


def test_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits-mlp") and client.is_model_ready("digits-cnn", "1")
    assert not client.is_model_ready("digits-mlp", "2")
    server = client.get_server_metadata()
    assert server["name"] == "mcdrop"
    metadata = client.get_model_metadata("digits-cnn")
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]


@pytest.mark.parametrize("binary", [False, True])
def test_infer_returns_every_statistic(client: triton.InferenceServerClient, binary: bool) -> None:
    result = _infer(client, binary)
    response = result.get_response()
    assert response["id"] == "triton-1"
    assert response["parameters"] == {"n_samples": 30, "seed": 9, "ci_level": 0.95}
    mean = result.as_numpy("mean")
    assert mean.shape == (4, 10) and mean.dtype == np.float32
    np.testing.assert_allclose(mean.sum(axis=1), 1.0, rtol=1e-5)
    classes = result.as_numpy("predicted_class")
    assert classes.dtype == np.int64 and classes.tolist() == DIGITS.target[:4].tolist()
    total = result.as_numpy("predictive_entropy")
    split = result.as_numpy("expected_entropy") + result.as_numpy("mutual_information")
    np.testing.assert_allclose(total, split, rtol=1e-4, atol=1e-6)
    assert result.as_numpy("ci_lower").shape == (4, 10)


def test_binary_and_json_answers_agree(client: triton.InferenceServerClient) -> None:
    names = ["mutual_information", "std", "samples"]
    as_json = _infer(client, binary=False, outputs=names)
    as_binary = _infer(client, binary=True, outputs=names, model_version="1")
    assert [o["name"] for o in as_json.get_response()["outputs"]] == names
    for name in names:
        np.testing.assert_array_equal(as_json.as_numpy(name), as_binary.as_numpy(name))
    assert as_binary.as_numpy("samples").shape == (4, 30, 10)


def test_errors_reach_the_client(client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("input", [1, 3], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 3), np.float32))
    with pytest.raises(InferenceServerException) as bad_shape:
        client.infer("digits-mlp", [tensor])
    assert bad_shape.value.status() == "400"
    assert "shape [1, 3] does not match [-1, 64]" in bad_shape.value.message()
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("nope", [tensor])
    assert unknown.value.status() == "404"
    assert unknown.value.message() == "model 'nope' not found"
