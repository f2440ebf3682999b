"""Open Inference Protocol v2: hand-written JSON and binary requests against the app."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_digits

DIGITS = load_digits()
PIXELS = [img.reshape(-1).astype(int).tolist() for img in DIGITS.images[:3]]
# The contract clients code against, spelled out.
CLASSIFICATION_OUTPUTS = (
    "mean", "std", "ci_lower", "ci_upper", "predicted_class", "confidence",
    "predictive_entropy", "expected_entropy", "mutual_information", "variation_ratio",
)  # fmt: skip
REGRESSION_OUTPUTS = (
    "mean", "epistemic_variance", "aleatoric_variance", "variance", "std",
    "ci_lower", "ci_upper", "pi_lower", "pi_upper",
)  # fmt: skip
DIABETES_ROW = [0.038, 0.051, 0.062, 0.022, -0.044, -0.035, -0.043, -0.003, 0.020, -0.018]


def _infer(client: TestClient, model: str, body: dict[str, Any], version: str = "") -> Any:
    path = f"/v2/models/{model}{f'/versions/{version}' if version else ''}/infer"
    return client.post(path, json=body)


def _digits_body(data: Any, datatype: str = "FP32", **extra: Any) -> dict[str, Any]:
    tensor = {"name": "input", "shape": [len(PIXELS), 64], "datatype": datatype, "data": data}
    return {"inputs": [tensor], "parameters": {"n_samples": 40, "seed": 5}, **extra}


def _outputs(response: Any) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.text
    return {output["name"]: output for output in response.json()["outputs"]}


def test_server_metadata(demo_client: TestClient) -> None:
    body = demo_client.get("/v2").json()
    assert body["name"] == "mcdrop" and body["version"] == "0.1.0"
    assert "binary_tensor_data" in body["extensions"]


def test_model_metadata_lists_every_statistic(demo_client: TestClient) -> None:
    mlp = demo_client.get("/v2/models/digits-mlp").json()
    assert mlp["name"] == "digits-mlp" and mlp["versions"] == ["1"]
    assert mlp["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    outputs = {o["name"]: o for o in mlp["outputs"]}
    assert list(outputs)[: len(CLASSIFICATION_OUTPUTS)] == list(CLASSIFICATION_OUTPUTS)
    assert outputs["mean"]["shape"] == [-1, 10]
    assert outputs["predicted_class"] == {
        "name": "predicted_class",
        "datatype": "INT64",
        "shape": [-1],
    }
    assert outputs["samples"]["shape"] == [-1, -1, 10]
    cnn = demo_client.get("/v2/models/digits-cnn/versions/1").json()
    assert cnn["inputs"][0]["shape"] == [-1, 1, 8, 8]
    reg = demo_client.get("/v2/models/diabetes-mlp").json()
    assert [o["name"] for o in reg["outputs"]] == [*REGRESSION_OUTPUTS, "samples"]
    assert reg["outputs"][0]["shape"] == [-1, 1]
    assert reg["parameters"]["task"] == "regression"


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/v2/models/nope", 404, "model 'nope' not found"),
        ("/v2/models/digits-mlp/versions/7", 404, "model 'digits-mlp' version '7' not found"),
        ("/v2/models/digits-mlp/versions/7/ready", 404, "version '7' not found"),
    ],
)
def test_unknown_models_and_versions_are_404(
    demo_client: TestClient, path: str, status: int, error: str
) -> None:
    response = demo_client.get(path)
    assert response.status_code == status
    assert set(response.json()) == {"error", "request_id"} and error in response.json()["error"]


def test_version_ready(demo_client: TestClient) -> None:
    response = demo_client.get("/v2/models/digits-mlp/versions/1/ready")
    assert response.status_code == 200
    assert response.json() == {"name": "digits-mlp", "ready": True}


def test_classification_infer_matches_the_native_api(demo_client: TestClient) -> None:
    body = _digits_body(PIXELS, id="req-42")
    response = _infer(demo_client, "digits-mlp", body)
    outputs = _outputs(response)
    answer = response.json()
    assert answer["id"] == "req-42"
    assert (answer["model_name"], answer["model_version"]) == ("digits-mlp", "1")
    assert answer["parameters"] == {"n_samples": 40, "seed": 5, "ci_level": 0.95}
    assert list(outputs) == list(CLASSIFICATION_OUTPUTS)
    native = demo_client.post(
        "/v1/models/digits-mlp/predict", json={"inputs": PIXELS, "n_samples": 40, "seed": 5}
    ).json()["predictions"]
    assert outputs["mean"]["shape"] == [3, 10] and outputs["mean"]["datatype"] == "FP32"
    assert outputs["mean"]["data"] == [p for row in native for p in row["mean"]]
    assert outputs["predicted_class"]["datatype"] == "INT64"
    assert outputs["predicted_class"]["data"] == DIGITS.target[:3].tolist()
    for name in ("mutual_information", "predictive_entropy", "variation_ratio"):
        assert outputs[name]["shape"] == [3]
        assert outputs[name]["data"] == [row[name] for row in native]


def test_flat_nested_and_integer_data_give_the_same_answer(demo_client: TestClient) -> None:
    nested = _outputs(_infer(demo_client, "digits-mlp", _digits_body(PIXELS)))
    flat = _digits_body([v for row in PIXELS for v in row])
    assert _outputs(_infer(demo_client, "digits-mlp", flat)) == nested
    for datatype in ("INT32", "UINT8", "FP64", "INT64"):
        typed = _outputs(_infer(demo_client, "digits-mlp", _digits_body(PIXELS, datatype)))
        assert typed == nested, datatype


def test_requested_outputs_and_samples(demo_client: TestClient) -> None:
    body = _digits_body(PIXELS, outputs=[{"name": "mutual_information"}, {"name": "samples"}])
    outputs = _outputs(_infer(demo_client, "digits-mlp", body))
    assert list(outputs) == ["mutual_information", "samples"]
    samples = outputs["samples"]
    assert samples["shape"] == [3, 40, 10] and len(samples["data"]) == 3 * 40 * 10


def test_regression_infer_with_version_and_ci_level(demo_client: TestClient) -> None:
    tensor = {"name": "input", "shape": [1, 10], "datatype": "FP64", "data": DIABETES_ROW}
    body = {"inputs": [tensor], "parameters": {"n_samples": 200, "seed": 0, "ci_level": 0.9}}
    response = _infer(demo_client, "diabetes-mlp", body, version="1")
    outputs = _outputs(response)
    assert list(outputs) == list(REGRESSION_OUTPUTS)
    assert response.json()["parameters"]["ci_level"] == 0.9
    native = demo_client.post(
        "/v1/models/diabetes-mlp/predict",
        json={"inputs": [DIABETES_ROW], "n_samples": 200, "seed": 0, "ci_level": 0.9},
    ).json()["predictions"][0]
    assert outputs["mean"]["data"] == native["mean"]
    assert outputs["pi_upper"]["data"] == native["pi_upper"]
    assert outputs["std"]["shape"] == [1, 1]
    lower, upper = outputs["pi_lower"]["data"][0], outputs["pi_upper"]["data"][0]
    assert lower < outputs["ci_lower"]["data"][0] < outputs["ci_upper"]["data"][0] < upper


def test_binary_tensor_data_in_and_out(demo_client: TestClient) -> None:
    values = [v for row in PIXELS for v in row]
    raw = struct.pack(f"<{len(values)}f", *values)
    tensor = {
        "name": "input",
        "shape": [3, 64],
        "datatype": "FP32",
        "parameters": {"binary_data_size": len(raw)},
    }
    header = json.dumps(
        {
            "inputs": [tensor],
            "parameters": {"n_samples": 40, "seed": 5},
            "outputs": [
                {"name": "confidence", "parameters": {"binary_data": True}},
                {"name": "mean"},
            ],
        }
    ).encode()
    response = demo_client.post(
        "/v2/models/digits-mlp/infer",
        content=header + raw,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200, response.text
    length = int(response.headers["Inference-Header-Content-Length"])
    answer = json.loads(response.content[:length])
    confidence, mean = answer["outputs"]
    assert confidence["parameters"] == {"binary_data_size": 12} and "data" not in confidence
    decoded = struct.unpack("<3f", response.content[length:])
    expected = _outputs(_infer(demo_client, "digits-mlp", _digits_body(PIXELS)))
    assert list(decoded) == expected["confidence"]["data"]
    assert mean["data"] == expected["mean"]["data"]


def _tensor(**fields: Any) -> dict[str, Any]:
    return {"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0] * 64, **fields}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"inputs": [_tensor(datatype="BYTES")]}, "datatype 'BYTES' is not supported"),
        ({"inputs": [_tensor(datatype="BOOL")]}, "datatype 'BOOL' is not supported"),
        ({"inputs": [_tensor(shape=[1, 63])]}, "shape [1, 63] does not match [-1, 64]"),
        ({"inputs": [_tensor(shape=[64])]}, "shape [64] does not match [-1, 64]"),
        ({"inputs": [_tensor(shape=[2, 64])]}, "data holds 64 values, shape needs 128"),
        ({"inputs": [_tensor(data=[0] * 63 + ["x"])]}, "data[63] is 'x', not a number"),
        ({"inputs": [_tensor(data=[0] * 63 + [True])]}, "data[63] is True, not a number"),
        ({"inputs": [_tensor(datatype="INT32", data=[0.5] * 64)]}, "data[0] = 0.5 is not an int"),
        ({"inputs": [_tensor(datatype="UINT8", data=[-1] * 64)]}, "out of range for uint8"),
        ({"inputs": [_tensor(name="x")]}, "exactly one input named 'input', got ['x']"),
        ({"inputs": [_tensor(), _tensor()]}, "exactly one input"),
        ({"inputs": [_tensor(data=None)]}, "has neither 'data' nor binary data"),
        (
            {"inputs": [_tensor(parameters={"binary_data_size": 256})]},
            "binary_data_size 256 does not hold 64 values of 4 bytes (0 binary bytes sent)",
        ),
        ({"inputs": [_tensor()], "outputs": [{"name": "label"}]}, "unknown output 'label'"),
        ({"inputs": [_tensor()], "parameters": {"n_samples": 2001}}, "maximum of 2000"),
        ({"inputs": [_tensor()], "parameters": {"n_samples": 0}}, "parameters.n_samples"),
        ({"inputs": [_tensor()], "parameters": {"ci_level": 1.0}}, "parameters.ci_level"),
        ({"inputs": []}, "inputs: List should have at least 1 item"),
        ({}, "inputs: Field required"),
        ({"inputs": [_tensor()], "extra": 1}, "extra: Extra inputs are not permitted"),
    ],
)
def test_bad_tensors_are_400_with_the_error_envelope(
    demo_client: TestClient, body: dict[str, Any], error: str
) -> None:
    response = _infer(demo_client, "digits-mlp", body)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error", "request_id"}
    assert error in response.json()["error"]


def test_malformed_json_is_400_on_v2_and_stays_422_on_v1(demo_client: TestClient) -> None:
    broken: dict[str, Any] = {
        "content": b'{"inputs": [',
        "headers": {"content-type": "application/json"},
    }
    v2 = demo_client.post("/v2/models/digits-mlp/infer", **broken)
    assert v2.status_code == 400 and "Invalid JSON" in v2.json()["error"]
    v1 = demo_client.post("/v1/models/digits-mlp/predict", **broken)
    assert v1.status_code == 422
    bad_header = demo_client.post(
        "/v2/models/digits-mlp/infer",
        content=b"{}",
        headers={"Inference-Header-Content-Length": "99"},
    )
    assert bad_header.status_code == 400 and "does not fit" in bad_header.json()["error"]


def test_unknown_model_or_version_on_infer_is_404(demo_client: TestClient) -> None:
    body = {"inputs": [_tensor()]}
    assert _infer(demo_client, "nope", body).json()["error"] == "model 'nope' not found"
    response = _infer(demo_client, "digits-mlp", body, version="2")
    assert response.status_code == 404
    assert response.json()["error"] == "model 'digits-mlp' version '2' not found"


def test_v2_requests_are_counted_by_outcome(demo_client: TestClient) -> None:
    _infer(demo_client, "digits-mlp", _digits_body(PIXELS))
    _infer(demo_client, "digits-mlp", {"inputs": [_tensor(datatype="BOOL")]})
    _infer(demo_client, "digits-mlp", {"inputs": [_tensor()], "parameters": {"n_samples": 9999}})
    _infer(demo_client, "nope", {"inputs": [_tensor()]})
    text = demo_client.get("/metrics").text
    prefix = 'mcdrop_requests_total{endpoint="v2_infer",model="digits-mlp",outcome='
    assert prefix + '"success"} 1.0' in text
    assert prefix + '"client_error"} 2.0' in text
    assert 'endpoint="v2_infer",model="_unknown",outcome="client_error"} 1.0' in text


def test_adaptive_n_in_parameters_matches_the_native_api(demo_client: TestClient) -> None:
    mc = {"n_samples": "auto", "tolerance": 1e-4, "max_n_samples": 400, "seed": 9}
    body = _digits_body(PIXELS)
    body["parameters"] = mc
    answer = _infer(demo_client, "digits-mlp", body)
    native = demo_client.post("/v1/models/digits-mlp/predict", json={"inputs": PIXELS, **mc})
    assert native.status_code == 200
    n = native.json()["n_samples"]
    assert 32 < n <= 400  # the tolerance asked for more than the first round
    assert answer.json()["parameters"]["n_samples"] == n
    means = [p for row in native.json()["predictions"] for p in row["mean"]]
    assert _outputs(answer)["mean"]["data"] == means


def test_mc_parameters_are_strict_integers(demo_client: TestClient) -> None:
    body = _digits_body(PIXELS)
    body["parameters"] = {"n_samples": True}
    response = _infer(demo_client, "digits-mlp", body)
    assert response.status_code == 400 and "parameters.n_samples" in response.json()["error"]
