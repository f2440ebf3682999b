"""Predictions carry abstain flags from the card's calibrated threshold, and are counted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from tests.support import metric_value

RULE = {"score": "mutual_information", "threshold": 0.0, "in_distribution_share": 0.95}


def test_rows_above_the_threshold_abstain_and_are_counted(
    model_factory: Callable[..., Path], client_for: Callable[..., TestClient]
) -> None:
    client = client_for(model_factory("gated", card={"abstention": RULE}).parent)
    # [0, 0] gives the same logits on every pass (MI = 0); [3, -3] does not.
    body = {"inputs": [[0, 0], [3, -3], [2, -1]], "n_samples": 40, "seed": 0}
    rows = client.post("/v1/models/gated/predict", json=body).json()["predictions"]
    assert [row["abstain"] for row in rows] == [False, True, True]
    client.post("/v1/models/gated/predict", json={**body, "inputs": [[4, 1]]})
    text = client.get("/metrics").text
    assert metric_value(text, "mcdrop_abstentions_total", {"model": "gated"}) == 3


def test_without_a_rule_rows_have_no_abstain_field(demo_client: TestClient) -> None:
    body = {"inputs": [[0] * 64], "n_samples": 5, "seed": 0}
    row = demo_client.post("/v1/models/digits-mlp/predict", json=body).json()["predictions"][0]
    assert "abstain" not in row
    assert "mcdrop_abstentions_total{" not in demo_client.get("/metrics").text
