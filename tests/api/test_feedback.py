"""POST /v1/models/{name}/feedback: labels for recent predictions move the live-coverage metrics."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from tests.support import metric_value, tiny_state

Factory = Callable[..., Path]
ROWS = [[0.0], [1.0], [2.0]]


def _models(factory: Factory, conformal: bool = True) -> Path:
    """A regression TinyNet y = 2x + 1 (tau 4) with a conformal band q = 3, and a classifier
    whose card has APS sets."""
    card = {"input": {"shape": [1], "dtype": "float32"}, "target": "y"}
    if conformal:
        card["conformal"] = {
            "kind": "normalised_residual",
            "level": 0.9,
            "quantile": 3.0,
            "rows": 50,
        }
    folder = factory(
        "line",
        task="regression",
        state=tiny_state(1, 2, 1),
        kwargs={"in_features": 1, "hidden": 2, "out_features": 1},
        card=card,
    )
    aps = {"kind": "aps", "level": 0.8, "quantile": 0.9, "rows": 50}
    factory("sets", card={"conformal": aps})
    return folder.parent


def _predict(
    client: TestClient, name: str, rows: list[list[float]], **headers: str
) -> tuple[str, dict[str, Any]]:
    answer = client.post(
        f"/v1/models/{name}/predict", json={"inputs": rows, "seed": 1}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["prediction_id"], answer.json()


def test_labels_by_prediction_id_count_coverage(
    model_factory: Factory, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(_models(model_factory))
    prediction_id, body = _predict(client, "line", ROWS)
    rows = body["predictions"]
    assert all(row["conformal_level"] == 0.9 for row in rows)
    for row in rows:
        assert row["conformal_lower"][0] == pytest.approx(
            row["mean"][0] - 3 * row["std"][0], abs=1e-5
        )
    # the first target sits on the mean, the second far outside every interval
    targets = [rows[0]["mean"][0], rows[1]["mean"][0] + 100.0, rows[2]["mean"][0]]
    answer = client.post(
        "/v1/models/line/feedback", json={"prediction_id": prediction_id, "targets": targets}
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["rows"] == 3
    assert result["intervals"]["predictive"] == {
        "covered": 2,
        "checked": 3,
        "level": pytest.approx(0.95),
    }
    assert result["intervals"]["conformal"] == {
        "covered": 2,
        "checked": 3,
        "level": pytest.approx(0.9),
    }
    text = client.get("/metrics").text
    assert metric_value(text, "mcdrop_feedback_total", {"model": "line"}) == 3
    for interval in ("predictive", "conformal"):
        labels = {"model": "line", "interval": interval}
        assert metric_value(text, "mcdrop_interval_covered_total", labels) == 2
        assert metric_value(text, "mcdrop_interval_checked_total", labels) == 3
    assert metric_value(
        text, "mcdrop_feedback_log_likelihood_sum", {"model": "line"}
    ) == pytest.approx(3 * result["log_likelihood"])
    again = client.post(
        "/v1/models/line/feedback", json={"prediction_id": prediction_id, "targets": targets}
    )
    assert again.status_code == 410 and "already received" in again.json()["error"]
    unknown = client.post(
        "/v1/models/line/feedback", json={"prediction_id": "nope", "targets": [1.0]}
    )
    assert unknown.status_code == 404


def test_labels_by_rows_and_prediction_sets(
    model_factory: Factory, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(_models(model_factory))
    _, body = _predict(client, "sets", [[2.0, -1.0], [0.0, 0.1]])
    rows = body["predictions"]
    assert all(set(row["prediction_set"]) <= {"left", "right"} for row in rows)
    assert rows[0]["prediction_set"][0] == rows[0]["label"] and rows[0]["conformal_level"] == 0.8
    feedback = {"inputs": [[0.0, 0.1], [2.0, -1.0]], "targets": ["right", "left"]}
    result = client.post("/v1/models/sets/feedback", json=feedback).json()
    covered = sum(
        label in row["prediction_set"] for row, label in zip(rows, ["left", "right"], strict=True)
    )
    assert result["intervals"] == {
        "prediction_set": {"covered": covered, "checked": 2, "level": pytest.approx(0.8)}
    }
    assert result["brier"] is not None
    text = client.get("/metrics").text
    assert metric_value(text, "mcdrop_feedback_brier_count", {"model": "sets"}) == 2
    missing = client.post("/v1/models/sets/feedback", json=feedback)
    assert missing.status_code == 404 and "inputs[0]" in missing.json()["error"]


def test_v2_outputs_carry_the_conformal_band(
    model_factory: Factory, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(_models(model_factory))
    body = {"inputs": [{"name": "input", "shape": [2, 1], "datatype": "FP32", "data": [0.0, 1.0]}]}
    answer = client.post("/v2/models/line/infer", json=body).json()
    names = [output["name"] for output in answer["outputs"]]
    assert "conformal_lower" in names and "conformal_upper" in names
    assert answer["parameters"]["conformal_level"] == 0.9
    sets = client.post(
        "/v2/models/sets/infer",
        json={
            "inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [2.0, -1.0]}]
        },
    ).json()
    output = next(o for o in sets["outputs"] if o["name"] == "prediction_set")
    assert output["datatype"] == "BOOL" and output["shape"] == [1, 2]
    assert output["data"][0] is True


def test_expired_feedback_is_gone(
    model_factory: Factory, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(_models(model_factory, conformal=False), feedback_max_age_s=0.2)
    prediction_id, _ = _predict(client, "line", ROWS)
    time.sleep(0.3)
    late = client.post(
        "/v1/models/line/feedback", json={"prediction_id": prediction_id, "targets": [1, 2, 3]}
    )
    assert late.status_code == 410 and "older than" in late.json()["error"]


def test_refused_feedback(model_factory: Factory, client_for: Callable[..., TestClient]) -> None:
    client = client_for(_models(model_factory, conformal=False))
    prediction_id, body = _predict(client, "line", ROWS)
    assert "conformal_lower" not in body["predictions"][0]
    bad = [
        {"prediction_id": prediction_id, "targets": [1.0, 2.0]},  # 3 rows were predicted
        {"prediction_id": prediction_id, "targets": ["x", 2.0, 3.0]},
        {"prediction_id": prediction_id, "inputs": ROWS, "targets": [1.0, 2.0, 3.0]},
        {"targets": [1.0]},
        {"inputs": [[1.0, 2.0]], "targets": [1.0]},  # the model takes one feature
        {"inputs": ROWS, "targets": [1.0]},
    ]
    for feedback in bad:
        assert client.post("/v1/models/line/feedback", json=feedback).status_code == 422, feedback
    assert (
        client.post(
            "/v1/models/nope/feedback", json={"prediction_id": "r", "targets": [1]}
        ).status_code
        == 404
    )
    ok = client.post(
        "/v1/models/line/feedback", json={"prediction_id": prediction_id, "targets": [1, 2, 3]}
    )
    assert ok.status_code == 200 and set(ok.json()["intervals"]) == {"predictive"}


def test_feedback_needs_the_predict_key(
    model_factory: Factory, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(_models(model_factory), api_keys=["user-key"])
    prediction_id, _ = _predict(client, "line", ROWS, authorization="Bearer user-key")
    body = {"prediction_id": prediction_id, "targets": [1.0, 2.0, 3.0]}
    assert client.post("/v1/models/line/feedback", json=body).status_code == 401
    answer = client.post(
        "/v1/models/line/feedback", json=body, headers={"authorization": "Bearer user-key"}
    )
    assert answer.status_code == 200


def test_card_rejects_a_conformal_kind_of_the_other_task(
    model_factory: Factory, client_for: Callable[..., TestClient]
) -> None:
    folder = model_factory(
        "wrong",
        card={
            "conformal": {"kind": "normalised_residual", "level": 0.9, "quantile": 1.0, "rows": 9}
        },
    )
    client = client_for(folder.parent)
    info = client.get("/v1/models/wrong").json()
    assert (
        info["ready"] is False
        and "conformal.kind must be 'lac' or 'aps' or 'raps'" in info["error"]
    )
    assert yaml.safe_load((folder / "model.yaml").read_text())["conformal"]["quantile"] == 1.0


def test_prediction_ids_are_the_servers_not_the_clients(
    model_factory: Factory, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(_models(model_factory, conformal=False))
    first_id, first = _predict(client, "line", ROWS, **{"x-request-id": "shared"})
    second = client.post(
        "/v1/models/line/predict",
        json={"inputs": [[5.0], [6.0], [7.0]], "seed": 1},
        headers={"x-request-id": "shared"},
    )
    assert second.headers["x-request-id"] == "shared"  # still there for tracing
    second_id = second.json()["prediction_id"]
    assert len({first_id, second_id, "shared"}) == 3
    by_header = client.post(
        "/v1/models/line/feedback", json={"prediction_id": "shared", "targets": [1, 2, 3]}
    )
    assert by_header.status_code == 404
    # the second prediction did not replace the first: its labels score the first's intervals
    targets = [row["mean"][0] for row in first["predictions"]]
    answer = client.post(
        "/v1/models/line/feedback", json={"prediction_id": first_id, "targets": targets}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["intervals"]["predictive"]["covered"] == 3
    variances = [row["variance"][0] for row in first["predictions"]]
    mean_ll = sum(-0.5 * math.log(2 * math.pi * v) for v in variances) / 3
    assert answer.json()["log_likelihood"] == pytest.approx(mean_ll, rel=1e-6)


def test_feedback_belongs_to_the_key_that_predicted(
    model_factory: Factory, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(_models(model_factory), api_keys=["alice-key", "bob-key"])
    alice = {"authorization": "Bearer alice-key"}
    bob = {"x-api-key": "bob-key"}
    prediction_id, _ = _predict(client, "line", ROWS, **alice)
    body = {"prediction_id": prediction_id, "targets": [1.0, 2.0, 3.0]}
    url = "/v1/models/line/feedback"
    stolen = client.post(url, json=body, headers=bob)
    never = client.post(url, json={**body, "prediction_id": "never-held"}, headers=bob)
    assert stolen.status_code == never.status_code == 404
    assert stolen.json()["error"].replace(prediction_id, "never-held") == never.json()["error"]
    by_rows = client.post(url, json={"inputs": ROWS, "targets": [1.0, 2.0, 3.0]}, headers=bob)
    assert by_rows.status_code == 404 and "inputs[0]" in by_rows.json()["error"]
    assert client.post(url, json=body, headers=alice).status_code == 200
    assert client.post(url, json=body, headers=bob).status_code == 404  # not 410: no hint
    assert client.post(url, json=body, headers=alice).status_code == 410


def test_non_finite_feedback_is_refused_and_metrics_stay_finite(
    model_factory: Factory, client_for: Callable[..., TestClient]
) -> None:
    client = client_for(_models(model_factory, conformal=False))
    prediction_id, body = _predict(client, "line", ROWS)
    url = "/v1/models/line/feedback"
    for targets, entry in (([1e308, 1.0, 1.0], 0), ([1.0, 1e200, 1.0], 1), ([1, 2, 1e39], 2)):
        answer = client.post(url, json={"prediction_id": prediction_id, "targets": targets})
        assert answer.status_code == 422, targets
        assert answer.json()["error"].startswith(f"targets[{entry}]: holds a value beyond")
    single_id, _ = _predict(client, "line", [[0.0]])
    probe = client.post(url, json={"prediction_id": single_id, "targets": [1e308]})  # the issue's
    assert probe.status_code == 422 and probe.json()["error"].startswith("targets[0]: holds")
    by_rows = client.post(url, json={"inputs": ROWS, "targets": [1.0, 1e308, 1.0]})
    assert by_rows.status_code == 422 and by_rows.json()["error"].startswith("targets[1]")
    text = client.get("/metrics").text
    assert metric_value(text, "mcdrop_feedback_total", {"model": "line"}) == 0
    assert metric_value(text, "mcdrop_feedback_log_likelihood_sum", {"model": "line"}) == 0
    # refused labels consumed nothing: the prediction still takes its feedback
    targets = [row["mean"][0] + 1.0 for row in body["predictions"]]
    answer = client.post(url, json={"prediction_id": prediction_id, "targets": targets})
    assert answer.status_code == 200, answer.text
    total = metric_value(
        client.get("/metrics").text, "mcdrop_feedback_log_likelihood_sum", {"model": "line"}
    )
    assert math.isfinite(total) and total == pytest.approx(3 * answer.json()["log_likelihood"])


def test_feedback_max_bytes_bounds_the_held_predictions(
    model_factory: Factory, client_for: Callable[..., TestClient]
) -> None:
    models = _models(model_factory, conformal=False)
    probe = client_for(models)
    _predict(probe, "line", ROWS)
    size = probe.app.state.mcdrop.dataplane.feedback.nbytes  # type: ignore[attr-defined]
    assert size > 0  # what one 3-row prediction of this model counts
    client = client_for(models, feedback_max_bytes=2 * size + size // 2)
    ids = [_predict(client, "line", ROWS)[0] for _ in range(3)]
    store = client.app.state.mcdrop.dataplane.feedback  # type: ignore[attr-defined]
    assert len(store) == 2 and store.nbytes == 2 * size
    url = "/v1/models/line/feedback"
    gone = client.post(url, json={"prediction_id": ids[0], "targets": [1, 2, 3]})
    assert gone.status_code == 410 and "pushed out" in gone.json()["error"]
    assert client.post(url, json={"prediction_id": ids[2], "targets": [1, 2, 3]}).status_code == 200
    small = client_for(models, feedback_max_bytes=size - 1)
    answer = small.post("/v1/models/line/predict", json={"inputs": ROWS, "seed": 1}).json()
    assert "prediction_id" not in answer  # larger than the whole store: not held
