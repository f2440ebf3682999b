"""The inference process's service on a socket of this test (no process, no HTTP worker):
how its batchers fuse what arrives together with ``max_wait_ms: 0``."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from app.config import load_settings
from app.dataplane import wire
from app.dataplane.inference import InferenceService
from app.engine.predictor import Prediction, PredictionRequest
from app.registry.repository import ModelRepository


def _request(seed: int) -> PredictionRequest:
    return PredictionRequest(torch.full((1, 64), float(seed)), 20, 0.9, seed=seed)


def _exchange(repository: ModelRepository, tmp_path: Path, groups: list[list[int]]) -> Any:
    """Send each group of predictions to the service in one write (the next group once the
    previous one is answered); every reply and observation in the order they came."""

    async def scenario() -> list[Any]:
        service = InferenceService(repository, load_settings(max_wait_ms=0))
        service.loaded.set()
        socket = str(tmp_path / "s")
        server = await asyncio.start_unix_server(service.serve_connection, path=socket)
        reader, writer = await asyncio.open_unix_connection(socket)
        seen: list[Any] = []
        deadline = time.monotonic() + 30
        for group in groups:
            frames = [
                wire.dumps(("predict", seed, "digits-mlp", "1", _request(seed), deadline, 0))
                for seed in group
            ]
            writer.write(b"".join(frames))
            replies = 0
            while replies < len(group):
                message = await wire.read_message(reader)
                seen.append(message)
                replies += message[0] == "reply"
        writer.close()
        server.close()
        return seen

    return asyncio.run(scenario())


def test_predictions_read_together_fuse_and_one_alone_runs_at_once(
    repository: ModelRepository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    predictor = repository.get("digits-mlp").predictor
    original, threads = predictor.predict_each, []

    def noted(requests: Any) -> Any:
        threads.append(threading.current_thread().name)
        return original(requests)

    monkeypatch.setattr(predictor, "predict_each", noted)
    seen = _exchange(repository, tmp_path, [[1], [2, 3, 4, 5], [6]])
    runs = [m for m in seen if m[0] == "observe" and m[2] is not None]
    assert [run[2] for run in runs] == [20, 4 * 20, 20], "alone, the four fused, alone"
    loop = threading.current_thread().name  # asyncio.run's loop runs on this thread
    assert threads[0] == loop and threads[1] != loop and threads[2] == loop
    replies = {m[1]: m[3] for m in seen if m[0] == "reply"}
    assert all(m[2] for m in seen if m[0] == "reply") and sorted(replies) == [1, 2, 3, 4, 5, 6]
    for seed in (2, 6):  # fused or alone, a seeded request's numbers are its own
        (alone,) = original([_request(seed)])
        assert isinstance(alone, Prediction)
        assert torch.equal(replies[seed].stats.mean, alone.stats.mean)
