"""Sampling in an inference process of its own, behind two HTTP workers (two apps here, each
with its own connection and metrics, as two ``mcdrop serve --workers 2`` processes have).

Every guarantee of the in-process data plane holds across the process boundary: seeded answers
bit-identical alone or fused (the fusing now mixes workers), crafted neighbours from another
worker answered alone, deadlines and cancellations reaching the inference process, every metric
counted once, and the weights only in the inference process.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.dataplane import DataPlane, PredictOptions
from app.dataplane.process import InferenceProcess
from app.dataplane.remote import InferenceClient
from app.main import create_app
from app.metrics import Metrics, build_metrics
from app.registry.described import DescribedModel, DescribedPredictor
from app.registry.repository import ModelRepository
from app.registry.served import LoadOptions
from tests.api.test_isolation import CRAFTED
from tests.support import BUNDLED_MODELS, TINY_NET_SOURCE, metric_value, write_model

REGRESSION = "/v1/models/diabetes-mlp/predict"
CLASSIFIER = "/v1/models/digits-mlp/predict"
SLOW = "/v1/models/slow/predict"
DEADLINE_S = 2.0
"""``request_timeout_s`` of the inference process and of its workers here."""
PAST_DEADLINE, WITHIN_DEADLINE = 7.0, 6.0
"""A row of the slow model starting with one of these makes its forward call sleep 3 s or 1 s."""
SLOW_SOURCE = TINY_NET_SOURCE.replace(
    "import torch\n",
    "import time\n\nimport torch\nimport torch.fx\n\n\n"
    "def pause(x: torch.Tensor) -> torch.Tensor:\n"
    "    first = x[:, 0].tolist()\n"
    "    time.sleep(3.0 if 7.0 in first else 1.0 if 6.0 in first else 0.0)\n"
    "    return x\n\n\n"
    "torch.fx.wrap('pause')  # called at run time, not traced through\n",
    1,
).replace(
    "        return self.out(self.drop(self.inp(x)))",
    "        return self.out(self.drop(self.inp(pause(x))))",
    1,
)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    for name in ("diabetes-mlp", "digits-mlp"):
        shutil.copytree(BUNDLED_MODELS / name, folder / name)
    slow = write_model(folder, "slow", task="regression")
    (slow / "net.py").write_text(SLOW_SOURCE)
    return folder


@pytest.fixture(scope="module")
def inference(models_dir: Path) -> Iterator[InferenceProcess]:
    """One inference process; requests within 300 ms of the oldest waiting one are fused."""
    process = InferenceProcess(
        Settings(models_dir=models_dir, max_wait_ms=300, request_timeout_s=DEADLINE_S)
    )
    assert process.start()
    yield process
    process.stop()


def _worker(models_dir: Path, socket: Path | None) -> TestClient:
    """An HTTP worker of the inference process at ``socket`` (None: an in-process app)."""
    settings = Settings(
        models_dir=models_dir, inference_socket=socket, request_timeout_s=DEADLINE_S
    )
    return TestClient(create_app(settings))


@pytest.fixture
def workers(models_dir: Path, inference: InferenceProcess) -> Iterator[list[TestClient]]:
    with _worker(models_dir, inference.socket) as a, _worker(models_dir, inference.socket) as b:
        yield [a, b]


@pytest.fixture(scope="module")
def alone(models_dir: Path) -> Iterator[TestClient]:
    """The in-process server of the same models: each request's answer alone."""
    with _worker(models_dir, None) as client:
        yield client


def _answer(client: TestClient, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    response = client.post(path, json=body)
    answer = response.json()
    if isinstance(answer, dict):
        answer.pop("prediction_id", None)  # fresh for each prediction
    return response.status_code, answer


def _untimed(value: Any) -> Any:
    """A JSON answer without its timings (loading and auditing took their own time each)."""
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if "seconds" not in k}
    return value


def _valid(i: int) -> tuple[str, dict[str, Any]]:
    if i % 2 == 0:
        row = [0.01 * ((i + k) % 7) for k in range(10)]
        return REGRESSION, {"inputs": [row, row[::-1]], "seed": i, "n_samples": 50 + i}
    row = [float((i * k) % 17) for k in range(64)]
    return CLASSIFIER, {"inputs": [row], "seed": i, "n_samples": "auto", "ci_level": 0.8}


def _metric(workers: list[TestClient], name: str, model: str) -> float:
    """``name`` summed over the workers' own /metrics."""
    return sum(metric_value(w.get("/metrics").text, name, {"model": model}) for w in workers)


def test_workers_hold_no_weights_and_describe_the_models_as_loaded(
    workers: list[TestClient], alone: TestClient
) -> None:
    for worker in workers:
        repository = worker.app.state.mcdrop.repository  # type: ignore[attr-defined]
        for model in repository.ready_models():
            assert isinstance(model, DescribedModel)
            assert isinstance(model.predictor, DescribedPredictor)
            assert sum(p.numel() for p in model.module.parameters()) == 0
        for path in ("/v1/models/diabetes-mlp", "/v1/models/digits-mlp", "/v2/models/digits-mlp"):
            assert _untimed(worker.get(path).json()) == _untimed(alone.get(path).json())


def test_two_requests_from_two_workers_fuse_into_one_run_counted_once(
    workers: list[TestClient], alone: TestClient
) -> None:
    bodies = [{"inputs": [[0.1 * k for k in range(10)]] * rows, "seed": rows, "n_samples": n}
              for rows, n in ((2, 30), (3, 40))]  # fmt: skip
    with ThreadPoolExecutor(2) as pool:
        fused = list(pool.map(_answer, workers, [REGRESSION] * 2, bodies))
    assert fused == [_answer(alone, REGRESSION, body) for body in bodies]
    assert _metric(workers, "mcdrop_batch_rows_count", "diabetes-mlp") == 1
    assert _metric(workers, "mcdrop_batch_rows_sum", "diabetes-mlp") == 2 * 30 + 3 * 40
    for worker in workers:  # each worker counts its own request's wait and outcome
        text = worker.get("/metrics").text
        assert metric_value(text, "mcdrop_queue_wait_seconds_count", {"model": "diabetes-mlp"}) == 1
        labels = {"model": "diabetes-mlp", "endpoint": "v1_predict", "outcome": "success"}
        assert metric_value(text, "mcdrop_requests_total", labels) == 1


def test_a_flood_over_two_workers_answers_each_request_as_if_alone(
    workers: list[TestClient], alone: TestClient
) -> None:
    requests = [_valid(i) for i in range(16)]
    expected = [_answer(alone, path, body) for path, body in requests]
    with ThreadPoolExecutor(len(requests)) as pool:
        clients = [workers[i % 2] for i in range(len(requests))]
        fused = list(pool.map(lambda c, r: _answer(c, *r), clients, requests))
    assert fused == expected
    runs = _metric(workers, "mcdrop_batch_rows_count", "diabetes-mlp")
    assert 1 <= runs < 8  # 8 regression requests, fused into fewer runs
    assert _metric(workers, "mcdrop_queue_wait_seconds_count", "diabetes-mlp") == 8


def test_crafted_neighbours_from_another_worker_reach_no_valid_answer(
    workers: list[TestClient], alone: TestClient
) -> None:
    valid = [_valid(i) for i in range(8)]
    expected = [_answer(alone, path, body) for path, body in valid]
    jobs = [(workers[0], r) for r in valid] + [(workers[1], r) for r in CRAFTED]
    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(lambda job: _answer(job[0], *job[1]), jobs))
    assert answers[: len(valid)] == expected
    for status, answer in answers[len(valid) :]:
        assert 400 <= status < 500, answer


def test_a_request_past_its_deadline_in_the_inference_queue_is_never_sampled(
    workers: list[TestClient],
) -> None:
    """The slow request holds the inference thread past the 2 s deadline; the request queued
    behind it from the other worker is answered 504 and its rows never run."""
    slow = {"inputs": [[PAST_DEADLINE, 0.0]], "seed": 0, "n_samples": 16}
    queued = {"inputs": [[1.0, 2.0]] * 5, "seed": 1, "n_samples": 20}
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(_answer, workers[0], SLOW, slow)
        while _metric(workers, "mcdrop_batch_rows_count", "slow") < 1:
            time.sleep(0.01)  # the slow run started
        second = pool.submit(_answer, workers[1], SLOW, queued)
        assert second.result()[0] == 504
        assert first.result()[0] == 504  # its run outlives the deadline too
    # The thread is free again: a last request runs, and no run ever held the queued rows.
    assert _answer(workers[1], SLOW, {"inputs": [[1.0, 2.0]], "seed": 2, "n_samples": 4})[0] == 200
    assert _metric(workers, "mcdrop_batch_rows_sum", "slow") == 16 + 4


def test_a_cancelled_request_is_dropped_by_the_inference_process(
    models_dir: Path, inference: InferenceProcess
) -> None:
    """A request whose caller goes away (a client disconnected) while it waits behind a slow
    run (shorter than the deadline) is never sampled."""
    settings = Settings(models_dir=models_dir, inference_socket=inference.socket)
    metrics = build_metrics()
    repository = ModelRepository(models_dir, LoadOptions())
    client = InferenceClient(inference.socket, settings.request_timeout_s)
    plane = DataPlane(repository, settings, metrics, client)

    async def scenario() -> None:
        await plane.connect()
        slow = asyncio.create_task(_predict(plane, [[WITHIN_DEADLINE, 0.0]], 16))
        while metric_value(_text(metrics), "mcdrop_batch_rows_count", {"model": "slow"}) < 1:
            await asyncio.sleep(0.01)  # the slow run started
        victim = asyncio.create_task(_predict(plane, [[1.0, 2.0]] * 5, 20))
        await asyncio.sleep(0.1)  # sent, queued behind the slow run
        victim.cancel()
        await slow
        await _predict(plane, [[1.0, 2.0]], 4)
        await plane.close()

    asyncio.run(scenario())
    assert metric_value(_text(metrics), "mcdrop_batch_rows_sum", {"model": "slow"}) == 16 + 4


async def _predict(plane: DataPlane, rows: list[list[float]], n: int) -> Any:
    return await plane.predict("slow", rows, PredictOptions(n_samples=n, seed=0), "v1_predict")


def _text(metrics: Metrics) -> str:
    return metrics.render()[0].decode()
