"""Large answers are serialised off the event loop, so health probes and other requests keep
being answered while a big ``return_samples`` answer turns into JSON."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import TypeVar

from app.engine.predictor import Prediction

T = TypeVar("T")

LARGE_ANSWER_VALUES = 65_536
"""Numbers in an answer above which it is serialised on a worker thread (below it, the thread
hop costs more than the serialisation)."""


def answer_values(prediction: Prediction) -> int:
    """How many numbers the answer to ``prediction`` holds."""
    stats = prediction.stats
    count: int = sum(getattr(stats, f.name).numel() for f in dataclasses.fields(stats))
    if prediction.samples is not None:
        count += prediction.samples.numel()
    return count


async def serialise(encode: Callable[[], T], values: int) -> T:
    """``encode()``: inline for a small answer, on a worker thread for a large one."""
    if values <= LARGE_ANSWER_VALUES:
        return encode()
    return await asyncio.to_thread(encode)
