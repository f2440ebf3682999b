"""What the inference process costs, without HTTP: CPU per prediction of the data plane
in-process and with sampling in an inference process (both processes counted), at a given
concurrency, the two in turn for --rounds rounds; --profile prints the HTTP side's cProfile.

    python -m bench.inference_process [--model digits-cnn] [--clients 32] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from app.config import Settings
from app.dataplane import DataPlane, PredictOptions
from app.dataplane.process import InferenceProcess, load_options
from app.dataplane.remote import InferenceClient
from app.metrics import build_metrics
from app.registry.repository import ModelRepository
from bench.common import MODELS, example_inputs
from bench.load import tree_cpu_s


async def _drive(
    plane: DataPlane, name: str, rows: list[list[float]], clients: int, seconds: float
) -> int:
    """``clients`` callers predicting back to back for ``seconds``; the predictions made."""
    options = PredictOptions(n_samples=100)
    done = 0
    stop = time.monotonic() + seconds

    async def caller() -> None:
        nonlocal done
        while time.monotonic() < stop:
            await plane.predict(name, rows, options, "v1_predict")
            done += 1

    await asyncio.gather(*(caller() for _ in range(clients)))
    return done


def measure(folder: Path, name: str, remote: bool, args: argparse.Namespace) -> dict[str, float]:
    """Predictions/s and CPU ms per prediction (this process plus the inference process)."""
    settings = Settings(models_dir=folder)
    rows = [example_inputs(_shape(folder, name), 1)[0].tolist()]
    inference = InferenceProcess(settings) if remote else None
    assert inference is None or inference.start()
    try:
        client = InferenceClient(inference.socket, 30.0) if inference else None
        repository = ModelRepository(folder, load_options(settings))
        plane = DataPlane(repository, settings, build_metrics(), client)

        async def run() -> tuple[int, float, float]:
            if client is not None:
                await plane.connect()
            else:
                plane.repository.load_all()
            await _drive(plane, name, rows, args.clients, 1.0)  # warm-up
            pids = [os.getpid()] + ([inference.pid] if inference and inference.pid else [])
            cpu = sum(tree_cpu_s(pid) for pid in pids)
            started = time.perf_counter()
            profile = cProfile.Profile() if args.profile else None
            if profile:
                profile.enable()
            count = await _drive(plane, name, rows, args.clients, args.seconds)
            if profile:
                profile.disable()
                pstats.Stats(profile).sort_stats("tottime").print_stats(15)
            elapsed = time.perf_counter() - started
            used = sum(tree_cpu_s(pid) for pid in pids) - cpu
            await plane.close()
            return count, elapsed, used

        count, elapsed, used = asyncio.run(run())
    finally:
        if inference is not None:
            inference.stop()
    return {"rps": count / elapsed, "cpu_ms": 1000 * used / count}


def _shape(folder: Path, name: str) -> list[int]:
    from app.registry.card import read_card

    return list(read_card(folder / name).input.shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits-cnn")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    seen: dict[str, list[dict[str, float]]] = {"in-process": [], "inference process": []}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        shutil.copytree(MODELS / args.model, folder / args.model)
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}: load average {os.getloadavg()}", flush=True)
            for kind in seen:
                seen[kind].append(measure(folder, args.model, kind != "in-process", args))
                print(kind, seen[kind][-1], flush=True)
    for kind, results in seen.items():
        print(
            kind, {key: round(statistics.median(r[key] for r in results), 3) for key in results[0]}
        )


if __name__ == "__main__":
    main()
