"""Service benchmark: requests/s and latency under concurrent load, N = 100.

Side by side in one run, for digits-cnn and digits-mlp at concurrency 1, 8 and 32:
  mcdrop   `mcdrop serve` (micro-batching, folding, prefix), one process, over HTTP on loopback
  mcdrop-wK  the same with `--workers K` processes (--workers, default 2: one per core here),
           each with its own models and batcher
  naive    bench/naive_server.py (per-request Python loop, no batching), over HTTP
  engine   mcdrop's engine in-process, no HTTP: `predict_many` on fused batches of the same size
           as the concurrency (the raw engine's throughput at that fused batch)
The load generator is `wrk` (Debian package `wrk`, C, one thread) when it is installed, for
--seconds per point after a warm-up; otherwise an httpx asyncio client sending --requests per
client (its own CPU cost then competes with the server for the 2 cores). The servers run in
their own processes on 127.0.0.1 only.

    python -m bench.service [--models digits-cnn digits-mlp] [--seconds 8] [--workers 2]
                            [--out docs]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import torch

from app.engine.predictor import PredictionRequest
from app.registry.loading import load_model_folder
from bench.common import MODELS, REPO, RESULTS, example_inputs, load_options, markdown_table

CONCURRENCY = (1, 8, 32)
N_SAMPLES = 100


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def server(command: list[str], port: int, **settings: str) -> Iterator[str]:
    """Start a server process on loopback (``settings`` as ``MCDROP_*`` variables), wait until
    ready, stop it afterwards."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env |= {f"MCDROP_{key.upper()}": value for key, value in settings.items()}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"server {command} did not become ready")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def wrk_load(url: str, body: dict[str, Any], concurrency: int, seconds: float) -> dict[str, float]:
    """``wrk`` with ``concurrency`` connections for ``seconds``: requests/s, p50 and p99."""
    with tempfile.TemporaryDirectory() as folder:
        body_file = Path(folder) / "body.json"
        body_file.write_text(json.dumps(body))
        script = Path(folder) / "post.lua"
        script.write_text(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f'local f = io.open("{body_file}", "r")\nwrk.body = f:read("*a")\nf:close()\n'
        )
        options = [
            "-t1",
            f"-c{concurrency}",
            "--timeout",
            "60s",
            "--latency",
            "-s",
            str(script),
            url,
        ]
        subprocess.run(["wrk", "-d2s", *options], capture_output=True, check=True)
        out = subprocess.run(
            ["wrk", f"-d{seconds:g}s", *options], capture_output=True, text=True, check=True
        ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw error answers:\n{out}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rps is not None, out
    return {
        "rps": float(rps.group(1)),
        "p50_ms": _wrk_ms(out, "50%"),
        "p99_ms": _wrk_ms(out, "99%"),
    }


def _wrk_ms(out: str, label: str) -> float:
    match = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out)
    assert match is not None, out
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


async def load(
    url: str, body: dict[str, Any], concurrency: int, per_client: int
) -> dict[str, float]:
    """``concurrency`` clients each send ``per_client`` requests back to back."""
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def one_client() -> None:
            for _ in range(per_client):
                started = time.perf_counter()
                response = await client.post(url, json=body)
                response.raise_for_status()
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(one_client() for _ in range(min(concurrency, 4))))  # warm-up
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(ordered) * 1e3,
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3,
    }


def engine_throughput(name: str, concurrency: int, seconds: float = 2.0) -> dict[str, float]:
    """Requests/s of predict_many on fused batches of ``concurrency`` one-row requests."""
    model = load_model_folder(MODELS / name, load_options())
    x = example_inputs(model.card.input.shape, 1)
    requests = [PredictionRequest(x, N_SAMPLES, 0.95, seed=i) for i in range(concurrency)]
    model.predictor.predict_many(requests)
    calls, latencies, started = 0, [], time.perf_counter()
    while time.perf_counter() - started < seconds:
        before = time.perf_counter()
        model.predictor.predict_many(requests)
        latencies.append(time.perf_counter() - before)
        calls += 1
    elapsed = time.perf_counter() - started
    return {"rps": calls * concurrency / elapsed, "p50_ms": statistics.median(latencies) * 1e3,
            "p99_ms": sorted(latencies)[int(0.99 * (len(latencies) - 1))] * 1e3}  # fmt: skip


def bench_model(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    model = load_model_folder(MODELS / name)
    row = example_inputs(model.card.input.shape, 1)[0].tolist()
    body = {"inputs": [row], "n_samples": N_SAMPLES}
    rows: list[dict[str, Any]] = []
    mcdrop = [sys.executable, "-m", "app.cli", "serve", "--models-dir", str(MODELS)]
    targets = {"mcdrop": mcdrop}
    if args.workers > 1:
        targets[f"mcdrop-w{args.workers}"] = [*mcdrop, "--workers", str(args.workers)]
    targets["naive"] = [sys.executable, "-m", "bench.naive_server", "--model", name]
    for kind, command in targets.items():
        port = _free_port()
        with server([*command, "--port", str(port)], port) as base:
            url = f"{base}/v1/models/{name}/predict"
            for concurrency in CONCURRENCY:
                if args.client == "wrk":
                    result = wrk_load(url, body, concurrency, args.seconds)
                else:
                    count = args.requests if kind != "naive" else max(3, args.requests // 4)
                    result = asyncio.run(load(url, body, concurrency, count))
                rows.append({"model": name, "server": kind, "concurrency": concurrency} | result)
                print(rows[-1], flush=True)
    for concurrency in CONCURRENCY:
        result = engine_throughput(name, concurrency)
        rows.append({"model": name, "server": "engine", "concurrency": concurrency} | result)
        print(rows[-1], flush=True)
    return rows


def bench_wait(name: str, waits: list[float], args: argparse.Namespace) -> list[dict[str, Any]]:
    """mcdrop with each ``max_wait_ms`` at 8 and 32 clients; the settings take turns in every
    round (ABAB...), so drifting load on the machine hits them alike; medians over rounds."""
    model = load_model_folder(MODELS / name)
    body = {"inputs": [example_inputs(model.card.input.shape, 1)[0].tolist()], "n_samples": 100}
    command = [sys.executable, "-m", "app.cli", "serve", "--models-dir", str(MODELS)]
    seen: dict[tuple[float, int], list[dict[str, float]]] = {}
    for _ in range(args.rounds):
        for wait in waits:
            port = _free_port()
            with server([*command, "--port", str(port)], port, max_wait_ms=str(wait)) as base:
                url = f"{base}/v1/models/{name}/predict"
                for concurrency in (8, 32):
                    if args.client == "wrk":
                        result = wrk_load(url, body, concurrency, args.seconds)
                    else:
                        result = asyncio.run(load(url, body, concurrency, args.requests))
                    seen.setdefault((wait, concurrency), []).append(result)
                    print({"max_wait_ms": wait, "clients": concurrency} | result, flush=True)
    return [
        {"model": name, "max_wait_ms": wait, "clients": concurrency}
        | {key: statistics.median(r[key] for r in results) for key in results[0]}
        for (wait, concurrency), results in sorted(seen.items())
    ]


def wait_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: req/s, p50 and p99 per max_wait_ms and clients, and the ratio to no wait."""
    table = []
    for r in rows:
        base = next(x for x in rows if x["model"] == r["model"] and x["clients"] == r["clients"]
                    and x["max_wait_ms"] == rows[0]["max_wait_ms"])  # fmt: skip
        table.append([r["model"], r["max_wait_ms"], r["clients"], r["rps"], r["p50_ms"],
                      r["p99_ms"], f"{r['rps'] / base['rps']:.2f}x",
                      f"{r['p99_ms'] / base['p99_ms']:.2f}x"])  # fmt: skip
    header = ["model", "max_wait_ms", "clients", "req/s", "p50 (ms)", "p99 (ms)", "req/s ratio",
              "p99 ratio"]  # fmt: skip
    return markdown_table(header, table)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4), squeeze=False)
    palette = iter(["tab:blue", "tab:purple", "tab:orange"])
    kinds = sorted({r["server"] for r in rows} - {"engine", "naive"})
    colors = {"engine": "tab:green", **{kind: next(palette) for kind in kinds}, "naive": "tab:red"}
    for ax, name in zip(axes[0], names, strict=True):
        for kind, color in colors.items():
            mine = [r for r in rows if r["model"] == name and r["server"] == kind]
            ax.plot([r["concurrency"] for r in mine], [r["rps"] for r in mine], marker="o",
                    color=color, label=kind)  # fmt: skip
        ax.set(xscale="log", yscale="log", title=f"{name}, N = {N_SAMPLES}",
               xlabel="concurrent clients", ylabel="requests / s")  # fmt: skip
        ax.set_xticks(CONCURRENCY, [str(c) for c in CONCURRENCY])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["digits-cnn", "digits-mlp"])
    parser.add_argument("--requests", type=int, default=60, help="httpx: requests per client")
    parser.add_argument("--seconds", type=float, default=8.0, help="wrk: seconds per point")
    parser.add_argument(
        "--client", choices=["wrk", "httpx"], default="wrk" if shutil.which("wrk") else "httpx"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="also run mcdrop with this many worker processes"
    )
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        nargs="*",
        help="only compare these max_wait_ms settings of mcdrop (first = baseline), 8 and 32 "
        "clients, --rounds rounds",
    )
    parser.add_argument("--rounds", type=int, default=3, help="--max-wait-ms: rounds")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {os.cpu_count()} cores, load generator: {args.client}")
    if args.max_wait_ms:
        found = [row for name in args.models for row in bench_wait(name, args.max_wait_ms, args)]
        print(wait_table(found))
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "service_wait.md").write_text(wait_table(found) + "\n")
        return
    rows = []
    for name in args.models:
        rows += bench_model(name, args)
    table_rows = []
    for r in rows:
        naive = next(x for x in rows if x["model"] == r["model"] and x["server"] == "naive"
                     and x["concurrency"] == r["concurrency"])  # fmt: skip
        engine = next(x for x in rows if x["model"] == r["model"] and x["server"] == "engine"
                      and x["concurrency"] == r["concurrency"])  # fmt: skip
        table_rows.append([r["model"], r["server"], r["concurrency"], r["rps"], r["p50_ms"],
                           r["p99_ms"], f"{r['rps'] / naive['rps']:.1f}x",
                           f"{100 * r['rps'] / engine['rps']:.0f}%"])  # fmt: skip
    header = [
        "model",
        "server",
        "clients",
        "req/s",
        "p50 (ms)",
        "p99 (ms)",
        "vs naive",
        "of engine",
    ]
    table = markdown_table(header, table_rows)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "service.json").write_text(json.dumps(rows, indent=1))
    (RESULTS / "service.md").write_text(table + "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    plot(rows, args.out / "bench-service.png")


if __name__ == "__main__":
    main()
