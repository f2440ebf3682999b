"""Shared helpers of the benchmark scripts: timing, tables, the bundled models' inputs, and
the device the environment names (``MCDROP_DEVICE``, as for ``mcdrop serve``)."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from app.config import load_settings
from app.dataplane.worker import InferenceThread
from app.engine.device import resolve_device, resolve_dtype
from app.registry.served import LoadOptions

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
RESULTS = REPO / "bench" / "results"


def median_seconds(run: Callable[[], object], repeats: int = 7, min_time: float = 0.05) -> float:
    """Median wall time of one call of ``run``: each repeat loops until ``min_time`` has passed."""
    run()  # warm-up
    samples = []
    for _ in range(repeats):
        calls, started = 0, time.perf_counter()
        while True:
            run()
            synchronize()
            calls += 1
            elapsed = time.perf_counter() - started
            if elapsed >= min_time:
                break
        samples.append(elapsed / calls)
    return statistics.median(samples)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; floats are printed with 3 significant digits."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3g}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def example_inputs(shape: Sequence[int], rows: int, seed: int = 0) -> torch.Tensor:
    """Deterministic raw-scale inputs (0..16, like the digits pixels) of the model's shape."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((rows, *shape), generator=generator) * 16


def load_options() -> LoadOptions:
    """The engine settings ``mcdrop serve`` would use in this environment (``MCDROP_DEVICE``,
    ``MCDROP_DTYPE``, ``MCDROP_MAX_SAMPLE_ROWS`` or the config file): a benchmark's models run
    where the server's would."""
    settings = load_settings()
    return LoadOptions(
        max_sample_rows=settings.max_sample_rows,
        device=resolve_device(settings.device),
        dtype=resolve_dtype(settings.dtype),
    )


def synchronize() -> None:
    """Wait for queued GPU work, so that a timed call includes it; nothing to do on the CPU
    (CUDA is never initialized there)."""
    if torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        torch.cuda.synchronize()


def interleaved_times(
    runs: dict[str, Callable[[], object]], repeats: int
) -> dict[str, list[float]]:
    """Each run's wall seconds in every repeat, the runs taken in turn within each repeat, so
    that a ratio compares calls made moments apart on a shared machine (no warm-up here)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return times


def interleaved_ratios(
    runs: dict[str, Callable[[], object]],
    repeats: int,
    clock: Callable[[], float],
    warm_up: bool = True,
    min_seconds: float = 0.0,
) -> dict[str, float]:
    """Median over rounds of each run's time divided by the ``forward`` run's time in the same
    round (every run once per round, after a warm-up round if ``warm_up``): on a shared, loaded
    machine the load changes between rounds, and a ratio of neighbouring measurements follows
    it less than ratios of separate medians. ``forward_s`` is the median forward time. With
    ``min_seconds`` a run shorter than that (timed once first) is called that many times over
    in each measurement, its time the mean: a 2 ms call timed alone is mostly scheduler noise."""
    calls = {name: 1 for name in runs}
    if min_seconds > 0:
        for name, run in runs.items():
            started = clock()
            run()
            synchronize()
            calls[name] = max(1, math.ceil(min_seconds / max(clock() - started, 1e-6)))
    rounds: dict[str, list[float]] = {name: [] for name in runs}
    first = 0 if warm_up else 1
    for index in range(first, repeats + 1):
        for name, run in runs.items():
            runs["forward"]()  # the same small call before each: no run inherits the state a
            # large predecessor left (freed memory given back, re-faulted by the next call)
            started = clock()
            for _ in range(calls[name]):
                run()
            synchronize()
            if index > 0:
                rounds[name].append((clock() - started) / calls[name])
    forward = rounds["forward"]
    ratios = {
        name: statistics.median(t / f for t, f in zip(times, forward, strict=True))
        for name, times in rounds.items()
    }
    return {**ratios, "forward_s": statistics.median(forward)}


def training_mode_passes(
    module: nn.Module, call: Callable[[], torch.Tensor], n: int
) -> torch.Tensor:
    """The textbook MC-dropout loop: ``call()`` N times with ``module`` in training mode,
    stacked (N, ...); ``module`` is back in eval mode afterwards."""
    module.train()
    try:
        with torch.inference_mode():
            return torch.stack([call() for _ in range(n)])
    finally:
        module.eval()


def on_thread(thread: InferenceThread, work: Callable[[], object]) -> object:
    """``work`` run on mcdrop's inference thread (as the server samples), its result."""
    return thread.submit(work).result()
