"""A tiny random-weight BERT folder served end to end: text in over v1 and v2, uncertainty out."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.hf_models import write_text_model
from tests.support import serve_in_thread, write_model

TEXTS = ["the staff were kind", "the parcel arrived late and the box was broken"]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_text_model(
        root, "reviews", card={"input": {"type": "text", "max_length": 32, "max_characters": 200}}
    )
    write_model(root, "tiny")
    return root


@pytest.fixture
def client(models_dir: Path, client_for: Callable[..., TestClient]) -> TestClient:
    return client_for(models_dir)


def _v1(client: TestClient, inputs: Any, **options: Any) -> Any:
    body = {"inputs": inputs, "n_samples": 16, "seed": 4, **options}
    return client.post("/v1/models/reviews/predict", json=body)


def _v2_text(shape: list[int], data: Any = None, **tensor: Any) -> dict[str, Any]:
    payload = {"name": "input", "shape": shape, "datatype": "BYTES", **tensor}
    if data is not None:
        payload["data"] = data
    return {"inputs": [payload], "parameters": {"n_samples": 16, "seed": 4}}


def test_v1_predict_takes_sentences_and_pairs(client: TestClient) -> None:
    pairs = [{"text": "kind staff", "text_pair": "late box"}, {"text": "a calm river"}]
    for inputs in (TEXTS, pairs):
        response = _v1(client, inputs)
        assert response.status_code == 200, response.text
        rows = response.json()["predictions"]
        assert len(rows) == 2
        assert all(row["label"] in ("neg", "neutral", "pos") for row in rows)
        assert all(abs(sum(row["mean"]) - 1.0) < 1e-5 for row in rows)
        assert all(row["mutual_information"] > 0 for row in rows)  # passes differ


def test_v1_and_v2_give_the_same_numbers_for_the_same_seed(client: TestClient) -> None:
    v1 = _v1(client, TEXTS).json()["predictions"]
    v2 = client.post("/v2/models/reviews/infer", json=_v2_text([2], TEXTS))
    assert v2.status_code == 200, v2.text
    outputs = {output["name"]: output for output in v2.json()["outputs"]}
    assert outputs["mean"]["shape"] == [2, 3]
    means = outputs["mean"]["data"]
    for row, values in zip(v1, (means[:3], means[3:]), strict=True):
        assert row["mean"] == pytest.approx(values, abs=1e-6)


def test_v2_pairs_json_and_binary_bytes(client: TestClient) -> None:
    pair = ["kind staff", "late box"]
    as_json = client.post("/v2/models/reviews/infer", json=_v2_text([1, 2], [pair]))
    raw = b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in pair)
    header = _v2_text([1, 2], parameters={"binary_data_size": len(raw)})
    encoded = __import__("json").dumps(header).encode()
    as_binary = client.post(
        "/v2/models/reviews/infer",
        content=encoded + raw,
        headers={"Inference-Header-Content-Length": str(len(encoded))},
    )
    v1 = _v1(client, [{"text": pair[0], "text_pair": pair[1]}]).json()["predictions"][0]
    for response in (as_json, as_binary):
        assert response.status_code == 200, response.text
        mean = next(o for o in response.json()["outputs"] if o["name"] == "mean")["data"]
        assert mean == pytest.approx(v1["mean"], abs=1e-6)


def test_metadata_lists_sampled_sites_attention_included(client: TestClient) -> None:
    info = client.get("/v1/models/reviews").json()
    assert (info["input_type"], info["max_length"], info["mc_dropout"]) == ("text", 32, "all")
    attention = [site for site in info["dropout"] if site["site"] == "attention"]
    assert len(attention) == 2 and all(site["sampled"] for site in attention)
    assert info["dropout_layers"] == len(info["dropout"]) == 8
    v2 = client.get("/v2/models/reviews").json()
    assert v2["inputs"] == [{"name": "input", "datatype": "BYTES", "shape": [-1]}]
    assert v2["parameters"]["input_type"] == "text"
    assert v2["parameters"]["mc_dropout"] == "all"
    assert "bert.encoder.layer.0.attention.self.dropout" in v2["parameters"]["sampled_dropout"]


@pytest.mark.parametrize(
    ("inputs", "field"),
    [
        ([], "inputs"),
        (["fine", 7], "inputs[1]"),
        ([{"text": "a", "extra": 1}], "inputs[0]"),
        (["x" * 201], "inputs[0]"),
    ],
)
def test_v1_bad_text_is_a_4xx_naming_the_field(client: TestClient, inputs: Any, field: str) -> None:
    response = _v1(client, inputs)
    assert response.status_code == 422
    assert field in response.json()["error"]


@pytest.mark.parametrize(
    ("tensor", "problem"),
    [
        (_v2_text([1], [3]), "not a string"),
        (_v2_text([2, 3], ["a"] * 6), "neither [B] nor [B, 2]"),
        ({"inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": [1.0]}]}, "BYTES"),
        (_v2_text([1], ["x" * 201]), "inputs[0]"),
        (_v2_text([1], None, parameters={"binary_data_size": 9}), "binary_data_size"),
    ],
)
def test_v2_bad_text_is_a_400(client: TestClient, tensor: dict[str, Any], problem: str) -> None:
    response = client.post("/v2/models/reviews/infer", json=tensor)
    assert response.status_code == 400
    assert problem in response.json()["error"]


def test_a_real_server_answers_text_over_http(models_dir: Path) -> None:
    import httpx

    with serve_in_thread(models_dir) as base_url:
        v1 = httpx.post(f"{base_url}/v1/models/reviews/predict", json={"inputs": TEXTS, "seed": 1})
        v2 = httpx.post(f"{base_url}/v2/models/reviews/infer", json=_v2_text([2], TEXTS))
        numbers = httpx.post(f"{base_url}/v1/models/tiny/predict", json={"inputs": [[1.0, 2.0]]})
    assert v1.status_code == v2.status_code == numbers.status_code == 200
    assert len(v1.json()["predictions"]) == 2
