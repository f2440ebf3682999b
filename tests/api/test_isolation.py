"""One request cannot hurt another: floods of valid requests with crafted neighbours fused into
the same sampling runs. Every valid request gets exactly its solo answer (same seed, same bits);
every crafted one gets its own 4xx."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from app.engine.sampling import SampleJob
from tests.stochastic_models import SEQUENCE, write_folder
from tests.support import metric_value, numbers_of

REGRESSION = "/v1/models/diabetes-mlp/predict"
CLASSIFIER = "/v1/models/digits-mlp/predict"
V2_CLASSIFIER = "/v2/models/digits-mlp/infer"

CRAFTED: list[tuple[str, dict[str, Any]]] = [
    (REGRESSION, {"inputs": [[0.01] * 10], "ci_level": 0.9999999999999999}),
    (REGRESSION, {"inputs": [[0.01] * 10], "n_samples": "auto", "tolerance": 5e-324}),
    (REGRESSION, {"inputs": [[0.01] * 10, [1e308] * 10], "n_samples": "auto"}),
    (CLASSIFIER, {"inputs": [[1.0] * 64, [1e39] * 64]}),
    # Admitted and sampled with the others; its statistics overflow and fail alone.
    (REGRESSION, {"inputs": [[1.0] * 10, [3e38] * 10], "n_samples": 60}),
    (REGRESSION, {"inputs": [[3e38] * 10], "n_samples": "auto"}),
    (CLASSIFIER, {"inputs": [[10**400] + [0] * 63]}),
    (CLASSIFIER, {"inputs": [[1.0] * 64], "n_samples": True}),
    (CLASSIFIER, {"inputs": [[1.0] * 64], "seed": True}),
    (
        V2_CLASSIFIER,
        {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP64", "data": [1e308] * 64}]},
    ),
]


def _valid(i: int) -> tuple[str, dict[str, Any]]:
    """A seeded valid request; the kinds rotate (fixed N, "auto", intervals, both tasks)."""
    if i % 3 == 0:
        row = [0.01 * ((i + k) % 7) for k in range(10)]
        return REGRESSION, {"inputs": [row, row[::-1]], "seed": i, "n_samples": 50 + i}
    if i % 3 == 1:
        row = [float((i * k) % 17) for k in range(64)]
        return CLASSIFIER, {"inputs": [row], "seed": i, "n_samples": "auto", "ci_level": 0.8}
    row = [float((i + k) % 16) for k in range(64)]
    return CLASSIFIER, {"inputs": [row], "seed": i, "n_samples": 40, "return_samples": True}


def _flood(client: TestClient, requests: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(lambda r: client.post(r[0], json=r[1]), requests))


def test_a_flood_with_crafted_neighbours_answers_each_valid_request_as_if_alone(
    client_for: Callable[..., TestClient],
) -> None:
    client = client_for(max_wait_ms=50)
    valid = [_valid(i) for i in range(32)]
    solo = [client.post(url, json=body) for url, body in valid]
    assert all(response.status_code == 200 for response in solo)
    runs_before = _fused_runs(client)
    mixed = valid + CRAFTED
    for _ in range(2):
        responses = _flood(client, mixed)
        for alone, together in zip(solo, responses[: len(valid)], strict=True):
            assert together.status_code == 200, together.text
            assert numbers_of(json.loads(together.text)) == numbers_of(json.loads(alone.text))
        for (url, body), response in zip(CRAFTED, responses[len(valid) :], strict=True):
            assert 400 <= response.status_code < 500, (url, body, response.text)
            assert response.json()["error"]
    # The valid requests were fused: fewer runs than requests.
    assert _fused_runs(client) - runs_before < 2 * len(valid)


def test_a_failing_fused_run_is_rerun_for_the_requests_that_did_not_cause_it(
    client_for: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_for(max_wait_ms=50)
    valid = [_valid(i) for i in range(1, 12, 3)]  # classifier requests, one model
    solo = [client.post(url, json=body) for url, body in valid]
    sampler = client.app.state.mcdrop.repository.get("digits-mlp").predictor.sampler  # type: ignore[attr-defined]
    original = sampler.sample_jobs

    def poisoned(jobs: list[SampleJob]) -> list[torch.Tensor]:
        if any(bool((job.inputs == 13.5).any()) for job in jobs):
            raise RuntimeError("the kernel failed on this input")
        return list(original(jobs))

    monkeypatch.setattr(sampler, "sample_jobs", poisoned)
    poison = (CLASSIFIER, {"inputs": [[13.5] * 64], "seed": 1})
    responses = _flood(client, [*valid, poison])
    for alone, together in zip(solo, responses[:-1], strict=True):
        assert together.status_code == 200
        assert numbers_of(json.loads(together.text)) == numbers_of(json.loads(alone.text))
    assert responses[-1].status_code == 500
    assert responses[-1].json()["error"] == "internal server error"


@pytest.mark.parametrize(
    ("url", "body", "row"),
    [
        (CLASSIFIER, {"inputs": [[1.0] * 64, [1e39] * 64]}, 1),
        (REGRESSION, {"inputs": [[0.0] * 10, [0.0] * 10, [-1e308] * 10]}, 2),
        (CLASSIFIER, {"inputs": [[0.0] * 64, [0.0] * 63 + [10**400]]}, 1),
    ],
)
def test_inputs_beyond_the_models_range_are_refused_naming_the_row(
    demo_client: TestClient, url: str, body: dict[str, Any], row: int
) -> None:
    response = demo_client.post(url, json=body)
    assert response.status_code == 422
    assert response.json()["error"].startswith(f"inputs[{row}]")  # and the position in it


def test_a_non_finite_statistic_is_a_422_naming_the_row_never_a_200_with_nulls(
    demo_client: TestClient,
) -> None:
    # Within float32's range, but the first layer's sums overflow to infinity.
    body = {"inputs": [[1.0] * 10, [3e38] * 10], "seed": 0}
    response = demo_client.post(REGRESSION, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"].startswith("inputs[1]: the model's output")
    v2 = {"inputs": [{"name": "input", "shape": [1, 10], "datatype": "FP32", "data": [3e38] * 10}]}
    assert demo_client.post("/v2/models/diabetes-mlp/infer", json=v2).status_code == 400


def _fused_runs(client: TestClient) -> float:
    text = client.get("/metrics").text
    return sum(
        metric_value(text, "mcdrop_batch_rows_count", {"model": model})
        for model in ("digits-mlp", "diabetes-mlp")
    )


def test_recurrent_requests_fused_in_a_flood_get_their_solo_answers(
    tmp_path: Path, client_for: Callable[..., TestClient]
) -> None:
    """A stacked LSTM (inter-layer dropout sampled) and a bidirectional time-major GRU."""
    write_folder(tmp_path, "speech", "SpeechRNN", {"kind": "lstm", "layers": 2, "p": 0.5})
    gru = {"kind": "gru", "layers": 2, "p": 0.4, "batch_first": False, "bidirectional": True}
    write_folder(tmp_path, "speech-gru", "SpeechRNN", gru)
    client = client_for(tmp_path, max_wait_ms=50)
    generator = torch.Generator().manual_seed(0)
    valid = [
        (
            f"/v1/models/{'speech' if i % 2 else 'speech-gru'}/predict",
            {
                "inputs": torch.randn(1 + i % 3, *SEQUENCE, generator=generator).tolist(),
                "seed": i,
                "n_samples": 20 + i,
                "return_samples": True,
            },
        )
        for i in range(12)
    ]
    solo = [client.post(url, json=body) for url, body in valid]
    assert all(response.status_code == 200 for response in solo)
    runs_before = _runs(client, ("speech", "speech-gru"))
    for alone, together in zip(solo, _flood(client, valid), strict=True):
        assert together.status_code == 200, together.text
        assert numbers_of(json.loads(together.text)) == numbers_of(json.loads(alone.text))
    assert _runs(client, ("speech", "speech-gru")) - runs_before < len(valid)  # some fused


def _runs(client: TestClient, models: tuple[str, ...]) -> float:
    text = client.get("/metrics").text
    return sum(metric_value(text, "mcdrop_batch_rows_count", {"model": m}) for m in models)
