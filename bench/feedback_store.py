"""Memory of the feedback store: what a held prediction costs, measured against what it counts.

Fills a ``FeedbackStore`` (no byte bound) with predictions of a given shape and reports the
process's RSS growth per held prediction next to ``HeldPrediction.nbytes``, the figure the
``feedback_max_bytes`` bound counts. Cases: 1-row and 256-row (``max_rows_per_request``)
predictions of a 1-output regression with a conformal band and a 10-class classifier with
prediction sets.

    python -m bench.feedback_store [--count 20000]
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import tracemalloc
from pathlib import Path

import torch

from app.dataplane.feedback_store import FeedbackStore, held_prediction
from app.engine.conformal import ConformalOutput
from app.engine.predictor import Prediction
from app.engine.stats import classification_stats, regression_stats
from bench.common import markdown_table


def rss_bytes() -> int:
    """This process's resident set size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def prediction(task: str, rows: int) -> Prediction:
    """A prediction of ``rows`` rows as the server makes it (10 passes)."""
    if task == "regression":
        stats = regression_stats(torch.randn(10, rows, 1), 0.25, 0.95)
        band = ConformalOutput(0.9, lower=stats.mean - 1.0, upper=stats.mean + 1.0)
        return Prediction(10, 0, 0.95, stats, None, 0.0, conformal=band)
    probs = torch.softmax(torch.randn(10, rows, 10), dim=-1)
    classes = classification_stats(probs, 0.95)
    sets = ConformalOutput(0.9, sets=classes.mean > 0.05)
    return Prediction(10, 0, 0.95, classes, None, 0.0, conformal=sets)


def measure(task: str, rows: int, count: int) -> tuple[float, int]:
    """(RSS growth per held prediction, its counted nbytes)."""
    store = FeedbackStore(count, 3600.0, 1 << 62)
    made = prediction(task, rows)
    inputs = [torch.randn(rows, 8) for _ in range(count)]  # distinct rows, made beforehand
    gc.collect()
    before = rss_bytes()
    for i in range(count):
        store.remember("a" * 32, "model", inputs[i], made)
    gc.collect()
    grown = (rss_bytes() - before) / count
    return grown, held_prediction("model", inputs[0], made, 0.0).nbytes


CASES = (("regression", 1), ("classification", 1), ("regression", 256), ("classification", 256))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--case", nargs=2, metavar=("TASK", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case is not None:
        task, size = args.case[0], int(args.case[1])
        grown, counted = measure(task, size, args.count if size == 1 else args.count // 50)
        print(f"{grown} {counted}")
        return
    table = []
    for task, size in CASES:
        # One process per case: memory freed by an earlier case would be reused by the next.
        command = [sys.executable, "-m", "bench.feedback_store", "--case", task, str(size)]
        command += ["--count", str(args.count)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rss, nbytes = output.split()
        table.append([task, size, f"{float(rss):,.0f}", f"{int(nbytes):,}"])
    print(markdown_table(["task", "rows", "RSS per held prediction", "counted nbytes"], table))
    print(f"an id that left the store (kept for its 410): {gone_bytes(args.count):,.0f} bytes")


def gone_bytes(count: int) -> float:
    """Python memory per entry of the list of ids that left the store (tracemalloc: they
    are plain Python objects)."""
    store = FeedbackStore(count, 3600.0, 1 << 62)
    made = prediction("regression", 1)
    for _ in range(count):
        store.remember("a" * 32, "model", torch.randn(1, 8), made)
    held = [store.find("a" * 32, "model", pid, 1)[0] for pid in list(store._held)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for one in held:
        store.settle(one)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / count


if __name__ == "__main__":
    main()
