"""Service benchmark: requests/s and latency under concurrent load, N = 100.

Side by side in one run, for each model at concurrency 1, 8, 32 and 128, --rounds rounds in turn
(every server once per round, so drifting load on the shared machine hits them alike; medians
over the rounds):
  mcdrop       `mcdrop serve` with its default settings: one HTTP worker per core (at most 4)
               in front of one inference process (the cores the workers leave as its threads)
  mcdrop-w1    the same with `--workers 1`: one HTTP worker, one inference process
  mcdrop-inproc  `inference_process: false`, one worker: HTTP and sampling in one process
  mcdrop-wK    `--workers K` HTTP workers in front of the one inference process (--workers K)
  litserve     bench/litserve_server.py: LitServe 0.2.19 (the bench extra), the same network as
               TorchScript, dynamic batching, samples folded, one inference worker
  naive        bench/naive_server.py (per-request Python loop, no batching), over HTTP
  engine       mcdrop's engine in-process, no HTTP: `predict_many` on fused batches of the same
               size as the concurrency (the raw engine's throughput at that fused batch)
The load generator is `hey` (Debian package `hey`) or `wrk` when installed, for --seconds per
point after a warm-up; otherwise an httpx asyncio client (its CPU competes with the servers').
Every server runs in its own processes on 127.0.0.1 and serves only the benchmarked model; its
memory is the PSS of its process tree after the 128-client point (shared pages counted once).

    python -m bench.service [--models digits-cnn] [--seconds 5] [--rounds 3] [--workers 2]
                            [--out docs]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import signal
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
from bench.load import Result, hey_load, httpx_load, pss_mib, wrk_load

CONCURRENCY = (1, 8, 32, 128)
N_SAMPLES = 100


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def server(
    command: list[str], port: int, ready: str = "/v2/health/ready", **settings: str
) -> Iterator[tuple[str, int]]:
    """Start a server process on loopback (``settings`` as ``MCDROP_*`` variables), wait until
    ``ready`` answers 200, yield its base URL and pid, stop it afterwards."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env |= {f"MCDROP_{key.upper()}": value for key, value in settings.items()}
    # A session of its own: stopping it stops every process it started (LitServe's API server
    # and inference worker outlive a terminated parent otherwise).
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}{ready}", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"server {command} did not become ready")
        yield base, process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # what is left of its session


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


def targets(
    name: str, folder: Path, args: argparse.Namespace
) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Server kind -> (command without --port, MCDROP_* settings), in the order they run."""
    mcdrop = [sys.executable, "-m", "app.cli", "serve", "--models-dir", str(folder / "models")]
    inproc = {"inference_process": "false", "workers": "1"}
    found = {
        "mcdrop": (mcdrop, {}),
        "mcdrop-w1": ([*mcdrop, "--workers", "1"], {}),
        "mcdrop-inproc": (mcdrop, inproc),
    }
    if args.workers > 1:
        found[f"mcdrop-w{args.workers}"] = ([*mcdrop, "--workers", str(args.workers)], {})
    if importlib.util.find_spec("litserve") is not None:  # the bench extra
        from bench.litserve_server import export_torchscript

        script = export_torchscript(name, folder / f"{name}.pt")
        peer = [sys.executable, "-m", "bench.litserve_server", "--model", name]
        found["litserve"] = ([*peer, "--torchscript", str(script)], {})
    found["naive"] = ([sys.executable, "-m", "bench.naive_server", "--model", name], {})
    return found


def measure(
    url: str,
    body: dict[str, Any],
    concurrency: int,
    args: argparse.Namespace,
    pid: int | None = None,
) -> Result:
    """One point with the chosen load generator (``hey`` also measures ``pid``'s CPU)."""
    if args.client == "hey":
        return hey_load(url, body, concurrency, args.seconds, pid)
    if args.client == "wrk":
        return wrk_load(url, body, concurrency, args.seconds)
    return asyncio.run(httpx_load(url, body, concurrency, args.requests))


def bench_model(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every server at every concurrency, ``args.rounds`` rounds; medians over the rounds."""
    model = load_model_folder(MODELS / name)
    body = {
        "inputs": [example_inputs(model.card.input.shape, 1)[0].tolist()],
        "n_samples": N_SAMPLES,
    }
    seen: dict[tuple[str, int], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        shutil.copytree(MODELS / name, folder / "models" / name)
        kinds = {k: v for k, v in targets(name, folder, args).items()
                 if not args.servers or k in args.servers}  # fmt: skip
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}: load average {os.getloadavg()}", flush=True)
            for kind, (command, settings) in kinds.items():
                port = _free_port()
                ready = "/health" if kind == "litserve" else "/v2/health/ready"
                with server([*command, "--port", str(port)], port, ready, **settings) as (
                    base,
                    pid,
                ):
                    for concurrency in CONCURRENCY:
                        result = dict(
                            measure(
                                f"{base}/v1/models/{name}/predict", body, concurrency, args, pid
                            )
                        )
                        result["pss_mib"] = pss_mib(pid)
                        seen.setdefault((kind, concurrency), []).append(result)
                        print({"server": kind, "clients": concurrency} | result, flush=True)
    rows = [
        {"model": name, "server": kind, "concurrency": concurrency}
        | {key: statistics.median(r[key] for r in results) for key in results[0]}
        | {"runs": len(results)}
        for (kind, concurrency), results in seen.items()
    ]
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
            settings = {"max_wait_ms": str(wait)}
            with server([*command, "--port", str(port)], port, **settings) as (base, _):
                url = f"{base}/v1/models/{name}/predict"
                for concurrency in (8, 32):
                    result = measure(url, body, concurrency, args)
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
    palette = iter(["tab:blue", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:cyan"])
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


def service_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per model, server and clients, the medians and the ratios to LitServe."""
    table = []
    for r in rows:
        peer = next((x for x in rows if x["model"] == r["model"] and x["server"] == "litserve"
                     and x["concurrency"] == r["concurrency"]), None)  # fmt: skip
        ratio = f"{r['rps'] / peer['rps']:.2f}x" if peer else "-"
        p99 = f"{r['p99_ms'] / peer['p99_ms']:.2f}x" if peer else "-"
        memory = f"{r['pss_mib']:.0f}" if "pss_mib" in r else "-"
        cpu = f"{r['cpu_ms']:.2f}" if "cpu_ms" in r else "-"
        table.append([r["model"], r["server"], r["concurrency"], r["rps"], r["p50_ms"],
                      r["p99_ms"], ratio, p99, cpu, memory])  # fmt: skip
    header = ["model", "server", "clients", "req/s", "p50 (ms)", "p99 (ms)", "req/s vs LitServe",
              "p99 vs LitServe", "CPU ms/req", "PSS (MiB)"]  # fmt: skip
    return markdown_table(header, table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["digits-cnn"])
    parser.add_argument("--requests", type=int, default=60, help="httpx: requests per client")
    parser.add_argument("--seconds", type=float, default=5.0, help="hey/wrk: seconds per point")
    clients = [tool for tool in ("hey", "wrk") if shutil.which(tool)] + ["httpx"]
    parser.add_argument("--client", choices=["hey", "wrk", "httpx"], default=clients[0])
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="also run mcdrop with this many HTTP workers (0: none)",
    )
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        nargs="*",
        help="only compare these max_wait_ms settings of mcdrop (first = baseline), 8 and 32 "
        "clients, --rounds rounds",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds (medians over them)")
    parser.add_argument("--servers", nargs="*", help="only these servers (default: all)")
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
    table = service_table(rows)
    print(table)
    print(f"load average at the end: {os.getloadavg()}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "service.json").write_text(json.dumps(rows, indent=1))
    (RESULTS / "service.md").write_text(table + "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    plot(rows, args.out / "bench-service.png")


if __name__ == "__main__":
    main()
