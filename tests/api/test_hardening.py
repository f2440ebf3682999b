from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import BUNDLED_MODELS, tiny_state, write_model

ROW = [[0.0] * 64]
PREDICT = "/v1/models/digits-mlp/predict"


def test_wrong_content_type_is_415(demo_client: TestClient) -> None:
    response = demo_client.post(
        PREDICT, content=b"inputs=1", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415
    assert response.json()["error"] == "content-type: must be application/json"


def test_body_over_the_limit_is_refused_before_it_is_read(
    client_for: Callable[..., TestClient],
) -> None:
    client = client_for(max_body_bytes=2048)
    big = {"inputs": [[1.0] * 64] * 40}
    response = client.post(PREDICT, json=big)
    assert response.status_code == 413
    assert "larger than the limit of 2048 bytes" in response.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        yield b'{"inputs": ['
        for _ in range(40):
            yield b"[" + b"1.0, " * 63 + b"1.0],"
        yield b"[0]]}"

    streamed = client.post(PREDICT, content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    assert client.post(PREDICT, json={"inputs": ROW}).status_code == 200


def test_request_sample_rows_are_capped(client_for: Callable[..., TestClient]) -> None:
    client = client_for(max_request_sample_rows=1000)
    response = client.post(PREDICT, json={"inputs": ROW * 11, "n_samples": 100})
    assert response.status_code == 422
    assert response.json()["error"] == (
        "n_samples: 11 rows x 100 samples = 1100 exceeds the limit of 1000 "
        "(max_request_sample_rows)"
    )


def test_request_ids_are_kept_or_made(demo_client: TestClient) -> None:
    mine = demo_client.get("/v1/models", headers={"x-request-id": "trace-42"})
    assert mine.headers["x-request-id"] == "trace-42"
    made = demo_client.get("/v1/models", headers={"x-request-id": "bad id with spaces"})
    assert len(made.headers["x-request-id"]) == 32
    error = demo_client.post(PREDICT, json={"inputs": [[1]]}, headers={"x-request-id": "r-1"})
    assert error.json()["request_id"] == "r-1"


def test_request_log_is_structured_and_never_holds_keys(
    client_for: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    client = client_for(api_keys=["s3cret-key"])
    with caplog.at_level(logging.INFO, logger="mcdrop.requests"):
        client.post(PREDICT, json={"inputs": ROW}, headers={"authorization": "Bearer s3cret-key"})
    records = [r for r in caplog.records if r.name == "mcdrop.requests"]
    assert records and records[-1].__dict__["status"] == 200
    assert records[-1].__dict__["path"] == PREDICT
    assert "s3cret-key" not in caplog.text


def test_api_keys_401_403_and_roles(tmp_path: Path, client_for: Callable[..., TestClient]) -> None:
    key_file = tmp_path / "keys.txt"
    key_file.write_text("# keys\nfile-key\n")
    client = client_for(api_keys=["user-key", "boss-key:admin"], api_key_file=key_file)
    body = {"inputs": ROW, "n_samples": 5}
    missing = client.post(PREDICT, json=body)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert client.post(PREDICT, json=body, headers={"x-api-key": "nope"}).status_code == 401
    for key in ("user-key", "boss-key", "file-key"):
        assert client.post(PREDICT, json=body, headers={"x-api-key": key}).status_code == 200
    forbidden = client.post("/v2/repository/index", headers={"x-api-key": "user-key"})
    assert forbidden.status_code == 403
    assert client.post("/v2/repository/index", headers={"x-api-key": "boss-key"}).status_code == 200
    # probes and scrapes stay open unless configured otherwise
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_health_and_metrics_can_require_keys(client_for: Callable[..., TestClient]) -> None:
    client = client_for(api_keys=["k"], auth_health=True, auth_metrics=True)
    assert client.get("/v2/health/live").status_code == 401
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"authorization": "Bearer k"}).status_code == 200


def test_cors_is_off_by_default_and_configurable(client_for: Callable[..., TestClient]) -> None:
    preflight = {"origin": "https://ui.example", "access-control-request-method": "POST"}
    closed = client_for().options(PREDICT, headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    opened = client_for(cors_origins=["https://ui.example"]).options(PREDICT, headers=preflight)
    assert opened.headers["access-control-allow-origin"] == "https://ui.example"


def test_repository_unload_load_and_reload(
    tmp_path: Path, client_for: Callable[..., TestClient]
) -> None:
    root = tmp_path / "models"
    shutil.copytree(BUNDLED_MODELS / "diabetes-mlp", root / "diabetes-mlp")
    client = client_for(root, model_control="explicit")
    body = {"inputs": [[0.0] * 10], "n_samples": 5, "seed": 0}
    url = "/v1/models/diabetes-mlp/predict"
    assert client.post(url, json=body).status_code == 200
    assert client.post("/v2/repository/models/diabetes-mlp/unload").json()["state"] == "UNLOADED"
    assert client.post(url, json=body).status_code == 503
    assert client.get("/v2/models/diabetes-mlp/ready").status_code == 503
    # a new folder appears, and the unloaded model comes back
    write_model(root, "tiny", task="regression", state=tiny_state())
    index = {m["name"]: m["state"] for m in client.post("/v2/repository/index").json()}
    assert index == {"diabetes-mlp": "UNLOADED", "tiny": "UNLOADED"}
    assert client.post("/v2/repository/models/tiny/load").json()["state"] == "READY"
    assert client.post("/v2/repository/models/diabetes-mlp/load").status_code == 200
    assert client.post(url, json=body).status_code == 200
    tiny = client.post("/v1/models/tiny/predict", json={"inputs": [[1.0, 2.0]], "n_samples": 4})
    assert tiny.status_code == 200
    missing = client.post("/v2/repository/models/ghost/load")
    assert missing.status_code == 404


def test_failing_load_keeps_the_model_unready_with_its_reason(
    tmp_path: Path, client_for: Callable[..., TestClient]
) -> None:
    root = tmp_path / "models"
    folder = write_model(root, "tiny", task="regression", state=tiny_state())
    client = client_for(root, model_control="explicit")
    (folder / "model.safetensors").write_bytes(b"corrupt")
    response = client.post("/v2/repository/models/tiny/load")
    assert response.status_code == 503 and "sha256 mismatch" in response.json()["error"]
    ready = client.get("/v2/models/tiny/ready")
    assert ready.status_code == 503 and "sha256 mismatch" in ready.json()["reason"]


def test_a_crashing_run_fails_only_its_requests_with_a_generic_500(
    client_for: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_for()
    state = client.app.state.mcdrop  # type: ignore[attr-defined]
    predictor = state.repository.get("digits-mlp").predictor
    original = predictor.predict_each

    def explode(requests: list[object]) -> object:
        raise RuntimeError("CUDA exploded at 0xdeadbeef")

    monkeypatch.setattr(predictor, "predict_each", explode)
    state.dataplane._batchers.clear()
    failed = client.post(PREDICT, json={"inputs": ROW})
    assert failed.status_code == 500
    assert failed.json()["error"] == "internal server error"
    assert "deadbeef" not in failed.text and "Traceback" not in failed.text
    other = client.post("/v1/models/digits-cnn/predict", json={"inputs": [[[[0.0] * 8] * 8]]})
    assert other.status_code == 200
    monkeypatch.setattr(predictor, "predict_each", original)
    state.dataplane._batchers.clear()
    assert client.post(PREDICT, json={"inputs": ROW}).status_code == 200


def test_flood_with_a_tiny_queue_gets_only_200_or_503(
    client_for: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sampling is held until a first 503 came back, so the queue overflows however fast the
    machine samples; then every request is answered, 200 or 503, nothing else."""
    client = client_for(max_queue=2, max_batch_rows=200)
    state = client.app.state.mcdrop  # type: ignore[attr-defined]
    predictor = state.repository.get("digits-mlp").predictor
    original, release = predictor.predict_each, threading.Event()

    def gated(*args: Any) -> Any:
        release.wait(30)
        return original(*args)

    monkeypatch.setattr(predictor, "predict_each", gated)
    body = {"inputs": ROW * 20, "n_samples": 100}
    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(client.post, PREDICT, json=body) for _ in range(64)]
        for future in as_completed(futures, timeout=30):
            if future.result().status_code == 503:
                break
        release.set()
        responses = [future.result() for future in futures]
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503}, codes
    assert codes.count(503) > 0 and codes.count(200) > 0
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["retry-after"] == "1"
    assert "overloaded" in refused.json()["error"]
    assert client.get("/v2/health/ready").status_code == 200
    assert client.post(PREDICT, json={"inputs": ROW}).status_code == 200
