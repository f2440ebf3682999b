"""The data plane as the routes call it: fusing with a real wait, admission of evaluations
(queue, deadline, cancellation, draining) and a close that always ends in time."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import torch

from app.config import load_settings
from app.dataplane import DataPlane, PredictOptions
from app.dataplane.plane import SHUTDOWN_JOIN_S
from app.engine.evaluation import evaluate
from app.engine.predictor import Prediction, PredictionRequest
from app.errors import DeadlineExceededError, OverloadedError, ShuttingDownError
from app.metrics import build_metrics
from app.registry.repository import ModelRepository
from app.registry.served import ServedModel

ROW = [[float(k % 16) for k in range(64)]]


def _plane(repository: ModelRepository, **settings: Any) -> DataPlane:
    return DataPlane(repository, load_settings(**settings), build_metrics())


@pytest.fixture
def runs(repository: ModelRepository, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Requests per sampling run of digits-mlp (its predictor spied on)."""
    predictor = repository.get("digits-mlp").predictor
    original = predictor.predict_each
    seen: list[int] = []

    def spy(requests: Sequence[PredictionRequest]) -> list[Prediction | Exception]:
        seen.append(len(requests))
        return original(requests)

    monkeypatch.setattr(predictor, "predict_each", spy)
    return seen


@pytest.mark.parametrize(("max_wait_ms", "expected"), [(1000.0, [2]), (0.0, [1, 1])])
def test_a_prediction_arriving_within_max_wait_is_fused_through_the_plane(
    repository: ModelRepository, runs: list[int], max_wait_ms: float, expected: list[int]
) -> None:
    plane = _plane(repository, max_wait_ms=max_wait_ms)
    options = PredictOptions(n_samples=20, seed=1)

    async def scenario() -> None:
        async def late() -> object:
            await asyncio.sleep(0.05)
            return await plane.predict("digits-mlp", ROW, options, endpoint="test")

        await asyncio.gather(plane.predict("digits-mlp", ROW, options, endpoint="test"), late())
        await plane.close()

    asyncio.run(scenario())
    assert runs == expected


class _Gate:
    """Blocks digits-mlp's sampling until opened; counts the calls that started."""

    def __init__(self, repository: ModelRepository, monkeypatch: pytest.MonkeyPatch) -> None:
        self.open = threading.Event()
        self.entered = threading.Event()
        self.calls = 0
        predictor = repository.get("digits-mlp").predictor
        original = predictor.sample_raw

        def gated(*args: Any) -> torch.Tensor:
            self.calls += 1
            self.entered.set()
            self.open.wait(10)
            return original(*args)

        monkeypatch.setattr(predictor, "sample_raw", gated)

    async def sampling_started(self) -> None:
        """Returns once a sampling call is blocked at the gate (an event, not a guessed sleep)."""
        for _ in range(500):
            if self.entered.is_set():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("no sampling call reached the gate in 5 s")


@pytest.fixture
def gate(repository: ModelRepository, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Gate]:
    found = _Gate(repository, monkeypatch)
    yield found
    found.open.set()


def _evaluation(plane: DataPlane, rows: int = 8) -> Callable[[], Any]:
    def start() -> Any:
        return plane.evaluate(
            "digits-mlp", ROW * rows, [3] * rows, PredictOptions(n_samples=32), endpoint="test"
        )

    return start


def test_evaluations_past_max_queue_are_refused(repository: ModelRepository, gate: _Gate) -> None:
    plane = _plane(repository, max_queue=2)

    async def scenario() -> None:
        first = asyncio.ensure_future(_evaluation(plane)())
        second = asyncio.ensure_future(_evaluation(plane)())
        await gate.sampling_started()
        with pytest.raises(OverloadedError):
            await _evaluation(plane)()
        with pytest.raises(OverloadedError):
            await plane.predict("digits-mlp", ROW, PredictOptions(), endpoint="test")
        gate.open.set()
        await asyncio.gather(first, second)
        await plane.close()

    asyncio.run(scenario())


def test_an_evaluation_past_its_deadline_is_a_504_and_its_next_steps_never_run(
    repository: ModelRepository, gate: _Gate
) -> None:
    # 8 rows x 32 samples in blocks of 16 passes: 2 sampling steps.
    plane = _plane(repository, request_timeout_s=1.0, max_batch_rows=64)

    async def scenario() -> None:
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            await _evaluation(plane)()
        assert time.monotonic() - started < 1.0 + 1.0  # the deadline, and not the gate's 10 s
        gate.open.set()
        await asyncio.sleep(0.2)
        await plane.close()

    asyncio.run(scenario())
    assert gate.calls == 1


def test_a_cancelled_evaluation_stops_at_its_next_step(
    repository: ModelRepository, gate: _Gate
) -> None:
    plane = _plane(repository, max_batch_rows=64)

    async def scenario() -> None:
        task = asyncio.ensure_future(_evaluation(plane)())
        await gate.sampling_started()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.open.set()
        await asyncio.sleep(0.2)
        await plane.close()

    asyncio.run(scenario())
    assert gate.calls == 1


def test_close_answers_every_waiter_and_ends_in_time_while_sampling_hangs(
    repository: ModelRepository, gate: _Gate
) -> None:
    plane = _plane(repository)

    async def scenario() -> list[object]:
        work = [asyncio.ensure_future(_evaluation(plane)()) for _ in range(2)]
        work += [
            asyncio.ensure_future(plane.predict("digits-mlp", ROW, PredictOptions(), "test"))
            for _ in range(2)
        ]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await plane.close(grace_s=0.3)
        assert time.monotonic() - started < 0.3 + SHUTDOWN_JOIN_S + 2.0  # 2 s of scheduling slack
        with pytest.raises(ShuttingDownError):
            await _evaluation(plane)()
        return list(await asyncio.wait_for(asyncio.gather(*work, return_exceptions=True), 2))

    outcomes = asyncio.run(scenario())
    # The running evaluation is abandoned (its thread still blocked), the waiting one refused;
    # predictions were answered or refused: nobody is left hanging.
    assert all(isinstance(o, ShuttingDownError) for o in outcomes[:2]), outcomes
    assert all(isinstance(o, tuple | ShuttingDownError) for o in outcomes[2:]), outcomes


def test_an_evaluation_in_steps_equals_the_engines_in_one_go(
    repository: ModelRepository,
) -> None:
    model = repository.get("digits-mlp")
    rows = [[float((i * k) % 17) for k in range(64)] for i in range(40)]
    targets = [i % 10 for i in range(40)]
    plane = _plane(repository, max_batch_rows=640)  # 40 rows x 50 samples: 16-pass blocks
    options = PredictOptions(n_samples=50, seed=7)

    async def stepped() -> Any:
        _, result = await plane.evaluate("digits-mlp", rows, targets, options, endpoint="test")
        await plane.close()
        return result

    request = PredictionRequest(torch.tensor(rows, dtype=torch.float64), 50, 0.95, seed=7)
    whole = evaluate(model.predictor, request, torch.tensor(targets))
    assert asyncio.run(stepped()) == whole


def test_evaluations_run_one_at_a_time_and_waiting_counts_against_the_deadline(
    repository: ModelRepository, gate: _Gate
) -> None:
    plane = _plane(repository, request_timeout_s=1.0)

    async def scenario() -> list[object]:
        both = [asyncio.ensure_future(_evaluation(plane)()) for _ in range(2)]
        outcomes = await asyncio.gather(*both, return_exceptions=True)
        gate.open.set()
        await plane.close()
        return list(outcomes)

    outcomes = asyncio.run(scenario())
    assert all(isinstance(o, DeadlineExceededError) for o in outcomes)
    assert gate.calls == 1  # the second one never sampled: it waited for the first


async def _run_once_the_queue_frees(plane: DataPlane) -> tuple[ServedModel, str]:
    """plane.run, retried while the abandoned evaluation's step still holds the queue's place
    (it ends once the gate opens: how soon is the machine's business)."""
    for _ in range(100):
        try:
            return await plane.run("digits-mlp", "test", lambda model: model.name)
        except OverloadedError:
            await asyncio.sleep(0.05)
    raise AssertionError("the queue stayed full 5 s after the gate opened")


def test_run_admits_a_job_like_a_prediction(repository: ModelRepository, gate: _Gate) -> None:
    plane = _plane(repository, max_queue=1, request_timeout_s=1.0)

    async def scenario() -> tuple[object, tuple[ServedModel, str]]:
        blocking = asyncio.ensure_future(_evaluation(plane)())
        await gate.sampling_started()
        with pytest.raises(OverloadedError):
            await plane.run("digits-mlp", "test", lambda model: model.name)
        late = await asyncio.gather(blocking, return_exceptions=True)
        gate.open.set()
        done = await _run_once_the_queue_frees(plane)
        await plane.close()
        with pytest.raises(ShuttingDownError):
            await plane.run("digits-mlp", "test", lambda model: model.name)
        return late[0], done

    late, (model, name) = asyncio.run(scenario())
    assert isinstance(late, DeadlineExceededError)
    assert name == "digits-mlp" and model is repository.get("digits-mlp")
