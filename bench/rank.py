"""Ranking benchmark: pool rows scored per second by ``mcdrop rank`` on each path.

digits-cnn, N = 100, strategy bald, k = 10, on one pool file (digits rows tiled with a little
noise), measured side by side in one run, the paths interleaved in every repeat (medians):
  loop    a baal-style loop: dropout modules in train mode (MCDropoutModule semantics), N whole
          forwards per chunk, BALD over the stacked passes, the same bounded top k
  local   ``mcdrop rank`` in this process (mcdrop's engine: prefix once, head N times)
  server  ``mcdrop rank --url``: the pool sent 256 rows a request to ``mcdrop serve``
  ray     ``mcdrop rank --ray``: Ray Data actors on a local Ray (started before timing; each
          run starts its actor pool, which loads the model)
Every path reads the CSV pool as the command does.

    python -m bench.rank [--rows 2000] [--repeats 3] [--paths loop local server ray]
    python -m bench.rank --memory 100000 1000000   # peak RSS of `mcdrop rank` by pool size
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from app.engine.acquisition import bald
from app.engine.ranking import ScoredRows, TopK
from app.ranking.pool import Pool
from app.ranking.runner import RankJob, inputs_of, rank_locally, rank_remotely
from app.registry.loading import load_model_folder
from app.registry.served import ServedModel
from bench.common import MODELS, interleaved_times, markdown_table
from bench.engine import naive_loop

MODEL = "digits-cnn"
N_SAMPLES = 100
MEMORY_N = 5
"""Passes in the memory runs: memory does not depend on the pool's size, whatever N; a small N
keeps a million rows affordable on a shared machine."""
JOB = RankJob("bald", k=10, n_samples=N_SAMPLES, seed=0, chunk_rows=1024)


def write_pool(path: Path, rows: int, seed: int = 0) -> Path:
    """``rows`` digits-like rows (0..16 pixels), written in blocks (flat memory)."""
    from sklearn.datasets import load_digits

    digits = load_digits().data.astype(np.float32)
    generator = np.random.default_rng(seed)
    with path.open("w") as handle:
        for start in range(0, rows, 10_000):
            count = min(10_000, rows - start)
            block = digits[generator.integers(0, len(digits), count)]
            block = np.clip(block + generator.normal(0, 1, block.shape), 0, 16)
            np.savetxt(handle, block, delimiter=",", fmt="%.2f")
    return path


def rank_with_loop(model: ServedModel, pool: Pool) -> list[int]:
    """The baal-style baseline: N whole-model forwards per chunk, then BALD and top k."""
    top = TopK.for_strategy("bald", JOB.k)
    for chunk in pool.chunks(JOB.chunk_rows):
        x = inputs_of(chunk, model.card.input.shape)
        probs = torch.softmax(naive_loop(model.module, x, N_SAMPLES), dim=-1)
        top.add(chunk.offset, ScoredRows(bald(probs), None))
    return top.indices.tolist()


@contextmanager
def server() -> Iterator[str]:
    """``mcdrop serve`` in a child process on a free port."""
    import httpx

    port = _free_port()
    command = [sys.executable, "-m", "app.cli", "serve", "--models-dir", str(MODELS)]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        env={**os.environ, "MCDROP_LOG_LEVEL": "warning"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def paths(names: list[str], pool: Pool, stack: list[object]) -> dict[str, Callable[[], object]]:
    """The ranking runs to time, by name (their set-up done here, outside the timing)."""
    model = load_model_folder(MODELS / MODEL)
    runs: dict[str, Callable[[], object]] = {
        "loop": lambda: rank_with_loop(model, pool),
        "local": lambda: rank_locally(model, pool, JOB, lambda n: None),
    }
    if "server" in names:
        from app.client import McdropClient

        context = server()
        url = context.__enter__()
        stack.append(context)
        client = McdropClient(url, timeout=600)
        remote = RankJob("bald", JOB.k, N_SAMPLES, 0, chunk_rows=256)
        runs["server"] = lambda: rank_remotely(
            client, MODEL, model.card.input.shape, pool, remote, lambda n: None
        )
    if "ray" in names:
        import ray

        from app.ranking.distributed import rank_with_ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        runs["ray"] = lambda: rank_with_ray(
            MODELS / MODEL, model.card.input.shape, pool, JOB, "local", 2, lambda n: None
        )
    return {name: runs[name] for name in names}


def throughput(rows: int, repeats: int, names: list[str]) -> None:
    """Rows per second of each path, and each one against the loop."""
    with tempfile.TemporaryDirectory() as folder:
        pool = Pool(write_pool(Path(folder) / "pool.csv", rows))
        stack: list[object] = []
        runs = paths(names, pool, stack)
        picks = {name: run() for name, run in runs.items()}  # warm-up, and the same picks
        # The loop draws its own masks; mcdrop's paths share the seed's (the same picks).
        mcdrop = {str(_selected(p)) for name, p in picks.items() if name != "loop"}
        print("mcdrop's paths pick the same rows:", len(mcdrop) == 1)
        times = interleaved_times(runs, repeats)
        for context in stack:
            context.__exit__(None, None, None)  # type: ignore[attr-defined]
    base = rows / statistics.median(times["loop"]) if "loop" in times else None
    table = []
    for name, seconds in times.items():
        rate = rows / statistics.median(seconds)
        table.append([name, rate, rate / base if base else "-", min(seconds), max(seconds)])
    header = ["path", "rows/s (median)", "x loop", "fastest s", "slowest s"]
    print(f"{MODEL}, N = {N_SAMPLES}, bald, k = {JOB.k}, {rows} rows, {repeats} repeats")
    print(markdown_table(header, table))


def _selected(result: object) -> list[int]:
    if isinstance(result, list):
        return result
    ranking = result[0]  # type: ignore[index]
    return list(ranking.selected)


def memory(sizes: list[int]) -> None:
    """Peak RSS of ``mcdrop rank`` (one child process per pool size)."""
    table = []
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            pool = write_pool(Path(folder) / f"pool{size}.csv", size)
            started = time.perf_counter()
            child = subprocess.run(
                [sys.executable, "-m", "bench.rank", "--measure", str(pool)],
                check=True,
                capture_output=True,
                text=True,
            )
            peak_mib = float(child.stdout.strip().splitlines()[-1])
            table.append(
                [size, pool.stat().st_size / 2**20, peak_mib, time.perf_counter() - started]
            )
            pool.unlink()
    print(f"mcdrop rank {MODEL} --strategy bald --k 10 --n-samples {MEMORY_N}, chunks of 1024 rows")
    print(markdown_table(["pool rows", "file MiB", "peak RSS MiB", "seconds"], table))


def measure(pool: Path) -> None:
    """Child of ``memory``: rank the pool, print this process's peak RSS in MiB."""
    from app.cli import main

    out = pool.with_suffix(".picks.csv")
    code = main([
        "rank", str(MODELS / MODEL), "--data", str(pool), "--k", "10", "--n-samples", str(MEMORY_N),
        "--seed", "0", "--out", str(out), "--quiet",
    ])  # fmt: skip
    assert code == 0
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--paths", nargs="+", default=["loop", "local", "server", "ray"])
    parser.add_argument("--memory", type=int, nargs="+", help="pool sizes for peak RSS")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        measure(args.measure)
    elif args.memory:
        memory(args.memory)
    else:
        throughput(args.rows, args.repeats, args.paths)


if __name__ == "__main__":
    main()
