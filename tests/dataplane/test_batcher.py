from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import torch

from app.dataplane.batcher import ModelBatcher
from app.engine.predictor import Prediction, PredictionRequest
from app.errors import DeadlineExceededError, OverloadedError, ShuttingDownError
from app.registry.loading import load_model_folder
from tests.support import BUNDLED_MODELS


def _request(rows: int = 1, n: int = 10, seed: int = 0) -> PredictionRequest:
    return PredictionRequest(torch.zeros(rows, 2), n_samples=n, ci_level=0.9, seed=seed)


class _Recorder:
    """A fake run_batch: records each batch, optionally blocks or fails."""

    def __init__(self, delay: float = 0.0, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.started: list[float] = []
        self.ended: list[float] = []
        self.delay = delay
        self.fail_on = fail_on
        self.release = threading.Event()
        self.release.set()

    def __call__(self, requests: Sequence[PredictionRequest]) -> list[Prediction]:
        self.release.wait()
        self.started.append(time.monotonic())
        time.sleep(self.delay)
        self.ended.append(time.monotonic())
        self.batches.append([r.seed or 0 for r in requests])
        if self.fail_on is not None and self.fail_on in self.batches[-1]:
            raise RuntimeError("sampling blew up")
        return [_fake_prediction(r) for r in requests]


def _fake_prediction(request: PredictionRequest) -> Prediction:
    return Prediction(request.n_samples, request.seed or 0, 0.9, None, None, 0.0)


def _batcher(run: _Recorder, **options: float) -> tuple[ModelBatcher, ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=1)
    settings = {"max_batch_rows": 1000, "max_wait_s": 0.05, "max_queue": 100} | options
    batcher = ModelBatcher(
        "m",
        run,
        executor,
        max_batch_rows=int(settings["max_batch_rows"]),
        max_wait_s=settings["max_wait_s"],
        max_queue=int(settings["max_queue"]),
    )
    return batcher, executor


def test_concurrent_requests_are_fused_into_one_run() -> None:
    run = _Recorder()

    async def scenario() -> list[Prediction]:
        batcher, _ = _batcher(run)
        return await asyncio.gather(*(batcher.submit(_request(seed=i)) for i in range(5)))

    results = asyncio.run(scenario())
    assert run.batches == [[0, 1, 2, 3, 4]]
    assert [r.seed for r in results] == [0, 1, 2, 3, 4]


def test_batches_stay_under_max_batch_rows() -> None:
    run = _Recorder()

    async def scenario() -> None:
        batcher, _ = _batcher(run, max_batch_rows=250)
        await asyncio.gather(*(batcher.submit(_request(rows=10, n=10, seed=i)) for i in range(5)))

    asyncio.run(scenario())
    assert run.batches == [[0, 1], [2, 3], [4]]


def test_a_failing_run_fails_its_waiter_and_the_next_run_works() -> None:
    run = _Recorder(fail_on=1)

    async def scenario() -> tuple[object, Prediction]:
        batcher, _ = _batcher(run)
        failed = await asyncio.gather(batcher.submit(_request(seed=1)), return_exceptions=True)
        after = await batcher.submit(_request(seed=7))
        return failed[0], after

    failed, after = asyncio.run(scenario())
    assert isinstance(failed, RuntimeError) and str(failed) == "sampling blew up"
    assert after.seed == 7


def test_full_queue_is_refused() -> None:
    run = _Recorder()
    run.release.clear()

    async def scenario() -> list[object]:
        batcher, _ = _batcher(run, max_queue=2, max_batch_rows=10, max_wait_s=0.0)
        first = asyncio.ensure_future(batcher.submit(_request(seed=0)))
        await asyncio.sleep(0.05)  # the first request's run is now blocked
        waiting = [asyncio.ensure_future(batcher.submit(_request(seed=i))) for i in (1, 2)]
        await asyncio.sleep(0.01)
        with pytest.raises(OverloadedError, match="2 requests already waiting"):
            await batcher.submit(_request(seed=3))
        run.release.set()
        return list(await asyncio.gather(first, *waiting))

    assert [p.seed for p in asyncio.run(scenario())] == [0, 1, 2]  # type: ignore[attr-defined]


def test_deadline_answers_and_drops_work_not_yet_started() -> None:
    run = _Recorder()
    run.release.clear()

    async def scenario() -> None:
        batcher, _ = _batcher(run, max_batch_rows=10, max_wait_s=0.0)
        blocker = asyncio.ensure_future(batcher.submit(_request(seed=0)))
        await asyncio.sleep(0.05)
        with pytest.raises(DeadlineExceededError, match=r"within 0\.05 s"):
            await batcher.submit(_request(seed=1), timeout_s=0.05)
        run.release.set()
        await blocker
        await batcher.submit(_request(seed=2))

    asyncio.run(scenario())
    assert run.batches == [[0], [2]]  # seed 1 timed out before its run: never sampled


def test_stop_finishes_queued_work_then_refuses_new() -> None:
    run = _Recorder(delay=0.02)

    async def scenario() -> list[Prediction]:
        batcher, _ = _batcher(run, max_batch_rows=10, max_wait_s=0.0)
        queued = [asyncio.ensure_future(batcher.submit(_request(seed=i))) for i in range(3)]
        await asyncio.sleep(0)
        await batcher.stop()
        with pytest.raises(ShuttingDownError):
            await batcher.submit(_request(seed=9))
        return list(await asyncio.gather(*queued))

    assert [p.seed for p in asyncio.run(scenario())] == [0, 1, 2]


@pytest.mark.parametrize("name", ["digits-cnn", "digits-mlp", "diabetes-mlp"])
def test_seeded_request_is_bit_identical_alone_or_fused(name: str) -> None:
    model = load_model_folder(BUNDLED_MODELS / name)
    shape = model.card.input.shape
    generator = torch.Generator().manual_seed(0)
    mine = PredictionRequest(
        torch.rand(3, *shape, generator=generator) * 16, n_samples=100, ci_level=0.9, seed=42
    )
    others = [
        PredictionRequest(
            torch.rand(b, *shape, generator=generator) * 16, n_samples=n, ci_level=0.9, seed=b
        )
        for b, n in [(1, 100), (5, 37), (2, 300)]
    ]
    alone = model.predictor.predict(mine)

    async def fused() -> Prediction:
        executor = ThreadPoolExecutor(max_workers=1)
        batcher = ModelBatcher(
            name, model.predictor.predict_each, executor,
            max_batch_rows=100_000, max_wait_s=0.05, max_queue=10,
        )  # fmt: skip
        results = await asyncio.gather(*(batcher.submit(r) for r in [*others[:2], mine, others[2]]))
        return results[2]

    together = asyncio.run(fused())
    assert torch.equal(together.stats.mean, alone.stats.mean)
    assert torch.equal(together.stats.std, alone.stats.std)
    assert together.mc_standard_error == alone.mc_standard_error


def test_a_request_arriving_within_max_wait_joins_the_oldest_ones_run() -> None:
    run = _Recorder()

    async def scenario() -> tuple[float, list[list[int]]]:
        batcher, _ = _batcher(run, max_wait_s=1.0)
        started = time.perf_counter()
        await batcher.submit(_request(seed=1))
        alone = time.perf_counter() - started

        async def late_arrival() -> Prediction:
            await asyncio.sleep(0.05)
            return await batcher.submit(_request(seed=3))

        await asyncio.gather(batcher.submit(_request(seed=2)), late_arrival())
        return alone, run.batches

    alone, batches = asyncio.run(scenario())
    # A lone request waits out max_wait (a sleep never ends early), and not a second one: the
    # 1 s of slack is for a loaded machine's scheduling.
    assert 1.0 <= alone < 2.0
    assert batches == [[1], [2, 3]]  # the late one joined the run of the one waiting


def test_requests_queued_during_a_run_do_not_wait_again() -> None:
    run = _Recorder(delay=1.5)

    async def scenario() -> None:
        batcher, _ = _batcher(run, max_wait_s=0.5)
        first = asyncio.ensure_future(batcher.submit(_request(seed=1)))
        await asyncio.sleep(0.7)  # the first run is going (waited 0.5 s, runs 1.5 s)
        await asyncio.gather(batcher.submit(_request(seed=2)), batcher.submit(_request(seed=3)))
        await first

    asyncio.run(scenario())
    assert run.batches == [[1], [2, 3]]
    # Queued for 1.3 s behind the first run, older than max_wait once it ends: their run
    # starts at once. Waiting again would put at least max_wait (0.5 s) between the runs.
    assert run.started[1] - run.ended[0] < 0.4


def test_a_failing_fused_run_is_retried_alone_for_each_request() -> None:
    run = _Recorder(fail_on=1)

    async def scenario() -> list[object]:
        batcher, _ = _batcher(run)
        return list(
            await asyncio.gather(
                *(batcher.submit(_request(seed=i)) for i in range(3)), return_exceptions=True
            )
        )

    outcomes = asyncio.run(scenario())
    assert run.batches == [[0, 1, 2], [0], [1], [2]]
    assert isinstance(outcomes[1], RuntimeError) and str(outcomes[1]) == "sampling blew up"
    assert [o.seed for o in outcomes if isinstance(o, Prediction)] == [0, 2]


def test_a_request_error_reaches_only_that_request() -> None:
    def run_batch(requests: Sequence[PredictionRequest]) -> list[Prediction | Exception]:
        return [
            ValueError(f"bad {r.seed}") if r.seed == 1 else _fake_prediction(r) for r in requests
        ]

    async def scenario() -> list[object]:
        batcher = ModelBatcher(
            "m", run_batch, ThreadPoolExecutor(1), max_batch_rows=100, max_wait_s=0.05, max_queue=9
        )
        return list(
            await asyncio.gather(
                *(batcher.submit(_request(seed=i)) for i in range(3)), return_exceptions=True
            )
        )

    outcomes = asyncio.run(scenario())
    assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == "bad 1"
    assert [getattr(o, "seed", None) for o in outcomes] == [0, None, 2]


def test_stop_past_its_grace_answers_the_waiting_with_503() -> None:
    run = _Recorder()
    run.release.clear()

    async def scenario() -> list[object]:
        batcher, _ = _batcher(run, max_batch_rows=10, max_wait_s=0.0)
        queued = [asyncio.ensure_future(batcher.submit(_request(seed=i))) for i in range(3)]
        await asyncio.sleep(0.05)  # the first run is blocked, two requests wait
        started = time.perf_counter()
        await batcher.stop(grace_s=0.1)
        assert time.perf_counter() - started < 0.1 + 1.0  # the grace, then no waiting for the run
        outcomes = await asyncio.gather(*queued, return_exceptions=True)
        run.release.set()
        return list(outcomes)

    outcomes = asyncio.run(scenario())
    assert all(isinstance(o, ShuttingDownError) for o in outcomes), outcomes


def test_an_idle_inference_process_batcher_runs_a_request_on_the_loop_thread() -> None:
    run, threads = _Recorder(), []

    def noted(requests: Sequence[PredictionRequest]) -> Any:
        threads.append(threading.current_thread().name)
        return run(requests)

    async def scenario(idle: bool, max_wait_s: float) -> bool:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infer")
        batcher = ModelBatcher(
            "m", noted, executor, max_batch_rows=1000, max_wait_s=max_wait_s, max_queue=10,
            idle=lambda: idle,
        )  # fmt: skip
        ticket = batcher.enqueue(_request(seed=1))
        answered_at_once = ticket.future.done()
        assert (await batcher.result(ticket)).seed == 1
        executor.shutdown()
        return answered_at_once

    assert asyncio.run(scenario(idle=True, max_wait_s=0.0))
    assert threads == [threading.current_thread().name]
    for idle, wait in ((False, 0.0), (True, 0.05)):  # the thread busy, or waiting to fuse
        threads.clear()
        assert not asyncio.run(scenario(idle=idle, max_wait_s=wait))
        assert len(threads) == 1 and threads[0].startswith("infer")
