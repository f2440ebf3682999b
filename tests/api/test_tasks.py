"""The new tasks over HTTP: multi-label and token classification on v1 and v2, their metrics,
evaluation and ranking; an output that does not fit its task is refused at load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import load_file, save_file

from tests.hf_models import write_text_model
from tests.support import metric_value, write_model

pytest.importorskip("transformers")

TAGS = {"id2label": {0: "O", 1: "PER", 2: "LOC"}}
TOPICS = {"id2label": {0: "billing", 1: "paperwork"}, "problem_type": "multi_label_classification"}
TEXT = "the parcel reached motorwayville late"
DENSE_SOURCE = """

class Dense(TinyNet):
    def forward(self, x):
        return super().forward(x).view(-1, 2, 32, 32)
"""


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_text_model(root, "tags", head="Token", labels=TAGS)
    topics = write_text_model(
        root, "topics", labels=TOPICS, card={"multilabel": {"threshold": 0.7}}
    )
    weights = load_file(str(topics / "model.safetensors"))
    weights["classifier.bias"] = torch.tensor([4.6, 0.0])  # billing ~0.99, paperwork ~0.5
    save_file(weights, str(topics / "model.safetensors"), metadata={"format": "pt"})
    state = {
        "inp.weight": torch.ones(4, 2),
        "inp.bias": torch.zeros(4),
        "out.weight": torch.ones(2048, 4),
        "out.bias": torch.zeros(2048),
    }
    dense = write_model(
        root, "dense", task="regression", state=state, kwargs={"out_features": 2048}
    )
    dense_card = (dense / "model.yaml").read_text().replace("class: TinyNet", "class: Dense")
    (dense / "model.yaml").write_text(dense_card)
    (dense / "net.py").write_text((dense / "net.py").read_text() + DENSE_SOURCE)
    return root


@pytest.fixture(scope="module")
def client(models_dir: Path) -> Any:
    from app.config import load_settings
    from app.main import create_app

    with TestClient(create_app(load_settings(models_dir=models_dir))) as started:
        yield started


def _predict(client: TestClient, model: str, inputs: list[Any], **options: Any) -> Any:
    body = {"inputs": inputs, "n_samples": 16, "seed": 4, **options}
    response = client.post(f"/v1/models/{model}/predict", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_dense_output_declared_regression_is_not_ready_and_says_why(client: TestClient) -> None:
    entry = client.get("/v1/models/dense").json()
    assert entry["ready"] is False
    assert "regression output must be (B, D) values, got (B, 2, 32, 32)" in entry["error"]
    assert client.get("/v2/models/dense/ready").status_code == 503
    refused = client.post("/v1/models/dense/predict", json={"inputs": [[0.0, 1.0]]})
    assert refused.status_code == 503


def test_token_rows_give_each_word_with_offsets_on_v1(client: TestClient) -> None:
    answer = _predict(client, "tags", [TEXT, "kind staff"])
    assert answer["task"] == "token_classification"
    first, second = (row["tokens"] for row in answer["predictions"])
    assert [t["text"] for t in first] == TEXT.split()
    assert all(TEXT[t["start"] : t["end"]] == t["text"] for t in first)
    assert [t["text"] for t in second] == ["kind", "staff"]
    assert set(first[0]) == {
        "text",
        "start",
        "end",
        "label",
        "confidence",
        "predictive_entropy",
        "mutual_information",
    }


def test_v2_gives_per_token_tensors_with_the_v1_numbers(client: TestClient) -> None:
    v1 = _predict(client, "tags", [TEXT])["predictions"][0]["tokens"]
    body = {
        "inputs": [{"name": "input", "shape": [1], "datatype": "BYTES", "data": [TEXT]}],
        "parameters": {"n_samples": 16, "seed": 4},
    }
    response = client.post("/v2/models/tags/infer", json=body)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    length = outputs["word"]["shape"][1]
    assert outputs["mean"]["shape"] == [1, length, 3]
    assert outputs["mutual_information"]["shape"] == [1, length]
    words = [i for i, on in enumerate(outputs["word"]["data"]) if on]
    assert [outputs["start"]["data"][i] for i in words] == [t["start"] for t in v1]
    assert [outputs["mutual_information"]["data"][i] for i in words] == pytest.approx(
        [t["mutual_information"] for t in v1], rel=1e-6
    )
    metadata = {o["name"]: o for o in client.get("/v2/models/tags").json()["outputs"]}
    assert metadata["mean"]["shape"] == [-1, -1, 3]
    assert metadata["word"] == {"name": "word", "datatype": "BOOL", "shape": [-1, -1]}


def test_multilabel_rows_use_the_cards_threshold(client: TestClient) -> None:
    answer = _predict(client, "topics", [TEXT])
    row = answer["predictions"][0]
    assert answer["task"] == "multilabel" and row["threshold"] == 0.7
    assert row["mean"][0] > 0.98
    assert row["predicted_labels"] == [
        name for name, p in zip(["billing", "paperwork"], row["mean"], strict=True) if p >= 0.7
    ]
    assert len(row["mutual_information"]) == len(row["expected_entropy"]) == 2
    outputs = client.post(
        "/v2/models/topics/infer",
        json={
            "inputs": [{"name": "input", "shape": [1], "datatype": "BYTES", "data": [TEXT]}],
            "parameters": {"n_samples": 16, "seed": 4},
        },
    ).json()["outputs"]
    found = {o["name"]: o for o in outputs}
    assert found["predicted"] == {
        "name": "predicted",
        "datatype": "BOOL",
        "shape": [1, 2],
        "data": [p >= 0.7 for p in row["mean"]],
    }


def test_the_uncertainty_histograms_count_every_label_and_word(client: TestClient) -> None:
    def counted() -> float:
        text = client.get("/metrics").text
        name = "mcdrop_mutual_information_count"
        return metric_value(text, name, {"model": "tags"}) + metric_value(
            text, name, {"model": "topics"}
        )

    before = counted()
    _predict(client, "tags", [TEXT])  # 5 words
    _predict(client, "topics", [TEXT, "kind staff"])  # 2 rows x 2 labels
    assert counted() - before == 5 + 4


def test_multilabel_evaluation_reports_per_label_metrics(client: TestClient) -> None:
    body = {"inputs": [TEXT, "kind staff"], "targets": [["billing"], []], "n_samples": 16}
    response = client.post("/v1/models/topics/evaluate", json=body)
    assert response.status_code == 200, response.text
    report = response.json()["multilabel"]
    assert len(report["brier"]) == len(report["ece"]) == len(report["f1"]) == 2
    assert report["threshold"] == 0.7
    assert report["macro_f1"] == pytest.approx(sum(report["f1"]) / 2)


def test_multilabel_ranks_by_bald_and_tokens_cannot_be_ranked(client: TestClient) -> None:
    body = {"inputs": [TEXT, "kind staff"], "k": 1, "strategy": "bald", "n_samples": 16}
    assert client.post("/v1/models/topics/rank", json=body).status_code == 200
    refused = client.post("/v1/models/tags/rank", json=body)
    assert refused.status_code == 422
    assert "does not apply to a token_classification model" in refused.json()["error"]


def test_the_client_reads_the_new_rows(models_dir: Path, client: TestClient) -> None:
    from app.api.schemas import PredictResponse
    from app.tasks.multilabel import MultilabelRow
    from app.tasks.token_classification import TokenRow

    tokens = PredictResponse.model_validate(_predict(client, "tags", [TEXT]))
    labels = PredictResponse.model_validate(_predict(client, "topics", [TEXT]))
    assert isinstance(tokens.predictions[0], TokenRow)
    assert isinstance(labels.predictions[0], MultilabelRow)


def test_token_models_cannot_be_evaluated_and_say_so(client: TestClient) -> None:
    body = {"inputs": [TEXT], "targets": [["O"]], "n_samples": 8}
    refused = client.post("/v1/models/tags/evaluate", json=body)
    assert refused.status_code == 422
    assert "evaluation is not available for token_classification models" in refused.json()["error"]
