"""Work that is not sampling, off the event loop and within the deadline: building a request
(decoding, tokenizing) on the decode threads, BatchBALD's selection one pick per step.

Every test orders events (gates, counters) instead of timing them; a deadline is only ever
compared with work that could not have finished before it (sleeps never end early).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from app.config import load_settings
from app.dataplane import DataPlane, PredictOptions
from app.dataplane.ranking import RankQuery
from app.engine.batchbald import GreedySelection
from app.engine.progress import checkpoint
from app.errors import DeadlineExceededError, InvalidInputError, ShuttingDownError
from app.inputs.tensor import TensorKind
from app.metrics import build_metrics
from app.registry.repository import ModelRepository

ROWS = [[float((i * k) % 17) for k in range(64)] for i in range(40)]


def _plane(repository: ModelRepository, **settings: Any) -> DataPlane:
    return DataPlane(repository, load_settings(**settings), build_metrics())


@pytest.fixture(autouse=True)
def _decoded_like_images(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests stand in for slow decoding (images, texts) with a tensor model: its small
    rows would be built on the loop (``builds_inline``), so here they go to the decode
    threads as an image's would."""
    monkeypatch.setattr(TensorKind, "builds_inline", lambda self, rows: False)


def test_a_few_numbers_are_built_on_the_loop_and_many_on_a_decode_thread(
    repository: ModelRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.undo()  # the kind's own builds_inline
    plane = _plane(repository)
    original = plane.policy.prediction
    threads: list[str] = []

    def noted(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return original(*args)

    monkeypatch.setattr(plane.policy, "prediction", noted)

    async def scenario() -> None:
        options = PredictOptions(n_samples=5)
        await plane.predict("digits-mlp", ROWS[:1], options, "test")  # 64 numbers
        await plane.predict("digits-mlp", ROWS[:40], options, "test")  # 2,560
        await plane.predict("digits-mlp", ROWS[:40] * 2, options, "test")  # 5,120: too many
        await plane.close()

    asyncio.run(scenario())
    loop = threading.main_thread().name
    assert threads[:2] == [loop, loop] and threads[2] != loop


def test_building_a_request_leaves_the_event_loop_free(
    repository: ModelRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request is held in the policy until a coroutine has run on the loop: were the policy
    on the loop, that coroutine could not run while it waits, and the wait would time out."""
    plane = _plane(repository)
    original, loop_ran, waited_out = plane.policy.prediction, threading.Event(), []

    def held(*args: Any) -> Any:
        waited_out.append(not loop_ran.wait(10))
        return original(*args)

    monkeypatch.setattr(plane.policy, "prediction", held)

    async def scenario() -> None:
        predicting = asyncio.ensure_future(
            plane.predict("digits-mlp", ROWS[:1], PredictOptions(n_samples=5), "test")
        )
        while not waited_out and not predicting.done():
            loop_ran.set()
            await asyncio.sleep(0.01)
        await predicting
        await plane.close()

    asyncio.run(scenario())
    assert waited_out == [False]


def test_a_request_past_its_deadline_stops_decoding_at_the_next_checkpoint(
    repository: ModelRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 'images' of 50 ms each cannot be decoded within a 0.5 s deadline: the request gets
    504 and the decoding thread stops at a checkpoint soon after, not after the 100th."""
    plane = _plane(repository, request_timeout_s=0.5)
    decoded: list[int] = []
    stopped: list[BaseException] = []

    def slow_images(*args: Any) -> Any:
        try:
            for index in range(100):
                checkpoint()
                time.sleep(0.05)
                decoded.append(index)
        except BaseException as exc:
            stopped.append(exc)
            raise
        raise AssertionError("decoded every image past the deadline")

    monkeypatch.setattr(plane.policy, "prediction", slow_images)

    async def scenario() -> None:
        with pytest.raises(DeadlineExceededError):
            await plane.predict("digits-mlp", ROWS[:1], PredictOptions(), "test")
        for _ in range(500):
            if stopped:
                break
            await asyncio.sleep(0.01)
        await plane.close()

    asyncio.run(scenario())
    assert len(stopped) == 1 and isinstance(stopped[0], DeadlineExceededError)
    assert len(decoded) < 100


def test_closing_stops_decoding_and_answers_the_waiting_request(
    repository: ModelRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    plane = _plane(repository)
    started, stopped = threading.Event(), []

    def endless(*args: Any) -> Any:
        started.set()
        try:
            while True:
                checkpoint()
                time.sleep(0.01)
        except BaseException as exc:
            stopped.append(exc)
            raise

    monkeypatch.setattr(plane.policy, "prediction", endless)

    async def scenario() -> None:
        waiting = asyncio.ensure_future(
            plane.predict("digits-mlp", ROWS[:1], PredictOptions(), "test")
        )
        while not started.is_set():
            await asyncio.sleep(0.01)
        await plane.close(grace_s=0.1)
        with pytest.raises(ShuttingDownError):
            await waiting
        for _ in range(500):
            if stopped:
                break
            await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert len(stopped) == 1 and isinstance(stopped[0], ShuttingDownError)


class _SlowPicks:
    """GreedySelection.pick counted, each pick held 0.2 s."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.first = threading.Event()
        original = GreedySelection.pick

        def pick(selection: GreedySelection) -> None:
            self.count += 1
            self.first.set()
            time.sleep(0.2)
            original(selection)

        monkeypatch.setattr(GreedySelection, "pick", pick)


BATCHBALD = RankQuery(k=30, strategy="batchbald", candidates=40)


@pytest.mark.parametrize("stop", ["deadline", "cancel"])
def test_batchbald_starts_no_pick_after_its_deadline_or_its_cancel(
    repository: ModelRepository, monkeypatch: pytest.MonkeyPatch, stop: str
) -> None:
    """30 picks of 0.2 s cannot fit a 1 s deadline (504); a client gone cancels the route's
    task: either way the pick running then ends and no further one starts."""
    picks = _SlowPicks(monkeypatch)
    plane = _plane(repository, request_timeout_s=1.0 if stop == "deadline" else 30.0)
    options = PredictOptions(n_samples=20, seed=1)

    async def scenario() -> int:
        ranking = asyncio.ensure_future(plane.rank("digits-mlp", ROWS, options, BATCHBALD, "test"))
        while not picks.first.is_set():
            await asyncio.sleep(0.01)
        if stop == "cancel":
            ranking.cancel()
        expected = DeadlineExceededError if stop == "deadline" else asyncio.CancelledError
        with pytest.raises(expected):
            await ranking
        at_stop = picks.count
        await asyncio.sleep(0.6)  # a pick running at the stop ends; none starts after it
        await plane.close()
        return at_stop

    at_stop = asyncio.run(scenario())
    assert picks.count == at_stop < BATCHBALD.k


def test_another_models_request_runs_between_two_picks(
    repository: ModelRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prediction sent while the selection runs is answered before the selection ends."""
    picks = _SlowPicks(monkeypatch)
    plane = _plane(repository)
    options = PredictOptions(n_samples=20, seed=1)
    query = RankQuery(k=15, strategy="batchbald", candidates=40)  # >= 3 s of picks

    async def scenario() -> tuple[bool, int]:
        ranking = asyncio.ensure_future(plane.rank("digits-mlp", ROWS, options, query, "test"))
        while not picks.first.is_set():
            await asyncio.sleep(0.01)
        image = [[[float(k % 16) for k in range(8)] for _ in range(8)]]
        await plane.predict("digits-cnn", [image], PredictOptions(n_samples=10), "test")
        answered_during = not ranking.done()
        picks_by_then = picks.count
        await ranking
        await plane.close()
        return answered_during, picks_by_then

    answered_during, picks_by_then = asyncio.run(scenario())
    assert answered_during and picks_by_then < query.k


def test_a_selection_over_the_work_limit_is_refused_up_front(repository: ModelRepository) -> None:
    plane = _plane(repository)
    query = RankQuery(k=1000, strategy="batchbald", candidates=1000)
    options = PredictOptions(n_samples=2000, seed=1)

    async def scenario() -> None:
        with pytest.raises(InvalidInputError) as refused:
            await plane.rank("digits-mlp", ROWS, options, query, "test")
        assert refused.value.message == (
            "k: BatchBALD's selection of k=1000 among 1000 candidates at n_samples=2000 "
            "(10 classes) takes about 4.2e+13 multiply-adds, more than the limit of 2e+11 "
            "(max_rank_selection_work): ask for fewer rows, candidates or samples"
        )
        await plane.close()

    asyncio.run(scenario())
