from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import numbers_of

BIG = {"inputs": [[8] * 64] * 128, "n_samples": 2000, "seed": 1}


def test_auto_n_reports_the_samples_used(demo_client: TestClient) -> None:
    body: dict[str, Any] = {"inputs": [[0.0] * 10], "n_samples": "auto", "seed": 3}
    loose = demo_client.post("/v1/models/diabetes-mlp/predict", json={**body, "tolerance": 2.0})
    tight = demo_client.post("/v1/models/diabetes-mlp/predict", json={**body, "tolerance": 0.05})
    assert loose.status_code == tight.status_code == 200, tight.text
    loose_body, tight_body = loose.json(), tight.json()
    assert loose_body["converged"] is True and tight_body["converged"] is True
    assert loose_body["mc_standard_error"] <= 2.0 and tight_body["mc_standard_error"] <= 0.05
    assert loose_body["n_samples"] < tight_body["n_samples"]
    capped = demo_client.post(
        "/v1/models/diabetes-mlp/predict",
        json={**body, "tolerance": 1e-9, "max_n_samples": 64},
    ).json()
    assert capped["n_samples"] == 64 and capped["converged"] is False


def test_auto_options_are_validated(demo_client: TestClient) -> None:
    url = "/v1/models/diabetes-mlp/predict"
    row = [[0.0] * 10]
    response = demo_client.post(url, json={"inputs": row, "n_samples": 10, "tolerance": 0.1})
    assert response.status_code == 422
    assert response.json()["error"] == 'tolerance: only applies with "n_samples": "auto"'
    response = demo_client.post(url, json={"inputs": row, "n_samples": "many"})
    assert response.status_code == 422 and "n_samples" in response.json()["error"]
    response = demo_client.post(
        url, json={"inputs": row, "n_samples": "auto", "max_n_samples": 5000}
    )
    assert response.json()["error"] == "max_n_samples: 5000 exceeds this model's maximum of 2000"


def test_health_answers_while_a_long_sample_runs(
    demo_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sampling is held at a gate until three liveness probes have been answered: if sampling
    blocked the event loop, the first probe could not be answered before the gate opens (at
    the latest after 30 s, when the test fails), however fast or loaded the machine."""
    state = demo_client.app.state.mcdrop  # type: ignore[attr-defined]
    predictor = state.repository.get("digits-mlp").predictor
    original, entered, release = predictor.predict_each, threading.Event(), threading.Event()

    waited_out: list[bool] = []

    def gated(*args: Any) -> Any:
        entered.set()
        waited_out.append(not release.wait(30))
        return original(*args)

    monkeypatch.setattr(predictor, "predict_each", gated)
    with ThreadPoolExecutor(max_workers=1) as pool:
        long_request = pool.submit(demo_client.post, "/v1/models/digits-mlp/predict", json=BIG)
        assert entered.wait(30), "sampling never started"
        answered = 0
        while answered < 3 and not release.is_set():
            assert demo_client.get("/v2/health/live").status_code == 200
            answered += 1
        sampling = not long_request.done()
        release.set()
        assert long_request.result().status_code == 200
    assert answered == 3 and sampling and waited_out == [False]


def test_concurrent_seeded_requests_get_their_own_numbers(demo_client: TestClient) -> None:
    url = "/v1/models/digits-cnn/predict"
    bodies = [{"inputs": [[[[float(i)] * 8] * 8]], "n_samples": 100, "seed": i} for i in range(12)]
    alone = [demo_client.post(url, json=body).json() for body in bodies]
    with ThreadPoolExecutor(max_workers=12) as pool:
        together = list(pool.map(lambda b: demo_client.post(url, json=b).json(), bodies))
    assert [numbers_of(a) for a in together] == [numbers_of(a) for a in alone]
