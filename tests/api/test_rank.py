"""``POST /v1/models/{name}/rank``: picks, their scores against predict, bad requests."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_digits

from tests.engine.error_bounds import FLOAT32_UNIT
from tests.support import float32_line_and_classifier, metric_value

ROWS = [image.reshape(-1).tolist() for image in load_digits().images[:40]]


def _rank(client: TestClient, model: str = "digits-mlp", **body: Any) -> Any:
    return client.post(f"/v1/models/{model}/rank", json={"inputs": ROWS, **body})


def test_bald_picks_are_the_rows_with_the_largest_mutual_information(
    demo_client: TestClient,
) -> None:
    response = _rank(demo_client, k=5, strategy="bald", n_samples=40, seed=3)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["strategy"], body["n_samples"], body["seed"]) == ("bald", 40, 3)
    predicted = demo_client.post(
        "/v1/models/digits-mlp/predict", json={"inputs": ROWS, "n_samples": 40, "seed": 3}
    ).json()["predictions"]
    mi = [row["mutual_information"] for row in predicted]
    best = sorted(range(len(mi)), key=lambda i: (-mi[i], i))[:5]
    assert body["selected"] == best
    assert body["scores"] == [mi[i] for i in best]


def test_batchbald_answers_k_distinct_rows_with_decreasing_gains(
    demo_client: TestClient,
) -> None:
    body = _rank(demo_client, k=4, strategy="batchbald", n_samples=30, seed=1).json()
    assert len(set(body["selected"])) == 4
    bald = _rank(demo_client, k=1, strategy="bald", n_samples=30, seed=1).json()
    assert body["selected"][0] == bald["selected"][0]
    # The first gain is BALD in float64; the bald strategy computes it in float32 from the same
    # passes, within that computation's rounding bound (tests/engine/error_bounds.bald_bound
    # with no perturbation: (C + N + 3) u (H(p̄) + E H), both entropies at most ln C).
    rounding = (10 + 30 + 3) * FLOAT32_UNIT * 2 * math.log(10)
    assert body["scores"][0] == pytest.approx(bald["scores"][0], rel=0, abs=rounding)


def test_a_seed_is_drawn_and_returned(demo_client: TestClient) -> None:
    first = _rank(demo_client, k=3, strategy="entropy").json()
    again = _rank(demo_client, k=3, strategy="entropy", seed=first["seed"]).json()
    assert again["selected"] == first["selected"] and again["scores"] == first["scores"]


def test_std_on_the_regression_model(demo_client: TestClient) -> None:
    rows = [[0.01 * (i - j) for j in range(10)] for i in range(12)]
    response = demo_client.post(
        "/v1/models/diabetes-mlp/rank", json={"inputs": rows, "k": 2, "strategy": "std"}
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["selected"]) == 2


@pytest.mark.parametrize(
    ("model", "body", "status", "message"),
    [
        ("digits-mlp", {"k": 2, "strategy": "std"}, 422, "strategy"),
        ("diabetes-mlp", {"k": 2, "strategy": "bald"}, 422, "strategy"),
        ("digits-mlp", {"k": 0}, 422, "k"),
        ("digits-mlp", {"k": True}, 422, "k"),
        ("digits-mlp", {"k": 2, "n_samples": True}, 422, "n_samples"),
        ("digits-mlp", {"k": 2, "seed": "7"}, 422, "seed"),
        ("digits-mlp", {"k": 2, "strategy": "random"}, 422, "strategy"),
        ("digits-mlp", {"k": 2, "n_samples": 100000}, 422, "n_samples"),
        ("digits-mlp", {"k": 2, "wrong": 1}, 422, "wrong"),
        ("digits-mlp", {"k": 2, "candidates": 5}, 422, "candidates"),
        ("digits-mlp", {"k": 2, "strategy": "batchbald", "candidates": 5000}, 422, "candidates"),
        ("digits-mlp", {"k": 8, "strategy": "batchbald", "candidates": 5}, 422, "candidates"),
        ("nope", {"k": 2}, 404, "nope"),
    ],
)
def test_bad_requests_are_refused(
    demo_client: TestClient, model: str, body: dict[str, Any], status: int, message: str
) -> None:
    if model == "diabetes-mlp":
        body = {"inputs": [[0.0] * 10], **body}
    response = demo_client.post(f"/v1/models/{model}/rank", json={"inputs": ROWS, **body})
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_rows_of_the_wrong_shape_are_refused(demo_client: TestClient) -> None:
    response = demo_client.post("/v1/models/digits-mlp/rank", json={"inputs": [[1.0, 2.0]], "k": 1})
    assert response.status_code == 422 and "inputs[0]" in response.json()["error"]


def test_rows_past_max_rows_per_rank_are_refused(client_for: Callable[..., TestClient]) -> None:
    client = client_for(max_rows_per_rank=10)
    response = _rank(client, k=2)
    assert response.status_code == 422 and "10" in response.json()["error"]


def test_small_steps_give_the_same_picks(client_for: Callable[..., TestClient]) -> None:
    # max_batch_rows 640 at N = 20: 32 rows a step, then 8.
    stepped = _rank(client_for(max_batch_rows=640), k=6, n_samples=20, seed=9).json()
    whole = _rank(client_for(), k=6, n_samples=20, seed=9).json()
    assert stepped["selected"] == whole["selected"] and stepped["scores"] == whole["scores"]
    # Steps of 3 rows (fewer than one aligned block) run the first layer on other row counts:
    # a probability moves by up to ~1e-5 relative, a BALD score by at most ~1e-4 (the bound of
    # tests/engine/error_bounds.bald_bound at that perturbation); the same rows are picked
    # where the scores of the top 7 are further apart than twice that.
    seven = _rank(client_for(), k=7, n_samples=20, seed=9).json()["scores"]
    assert min(a - b for a, b in itertools.pairwise(seven)) > 2e-4
    tiny = _rank(client_for(max_batch_rows=64), k=6, n_samples=20, seed=9).json()
    assert tiny["selected"] == whole["selected"]
    assert tiny["scores"] == pytest.approx(whole["scores"], rel=0, abs=1e-4)


def test_rank_requests_are_counted(demo_client: TestClient) -> None:
    _rank(demo_client, k=2, n_samples=10, seed=0)
    metrics = demo_client.get("/metrics").text
    assert (
        metric_value(
            metrics,
            "mcdrop_requests_total",
            {"model": "digits-mlp", "endpoint": "v1_rank", "outcome": "success"},
        )
        == 1.0
    )


def test_a_batchbald_selection_past_the_work_limit_is_a_422_up_front(
    demo_client: TestClient,
) -> None:
    response = _rank(demo_client, k=1000, strategy="batchbald", n_samples=2000, candidates=1000)
    assert response.status_code == 422
    assert "(max_rank_selection_work)" in response.json()["error"]


def test_overflowing_rows_are_refused_like_predict(
    model_factory: Callable[..., Path], client_for: Callable[..., TestClient]
) -> None:
    models_dir = float32_line_and_classifier(model_factory)
    # 20 passes in steps of 40 folded rows: two rows a step, so row 3 is in the second step
    client = client_for(models_dir, max_batch_rows=40)
    cases = [("line", "std", [[0.0], [1.0], [2.0], [3e38], [4.0]])]
    cls_rows = [[0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [3e38, 0.0], [1.0, 1.0]]
    cases += [("cls", strategy, cls_rows) for strategy in ("bald", "batchbald", "entropy")]
    for name, strategy, rows in cases:
        predicted = client.post(f"/v1/models/{name}/predict", json={"inputs": rows, "seed": 0})
        body = {"inputs": rows, "k": 1, "strategy": strategy, "n_samples": 20, "seed": 0}
        ranked = client.post(f"/v1/models/{name}/rank", json=body)
        assert predicted.status_code == ranked.status_code == 422, (strategy, ranked.text)
        assert ranked.json()["error"] == predicted.json()["error"]
        assert ranked.json()["error"].startswith("inputs[3]: the model's output")
