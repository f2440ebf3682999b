"""Soak test: mixed valid, invalid and crafted traffic at high concurrency against a real server.

Starts `mcdrop serve` on 127.0.0.1 (loopback only), sends a bounded mix of requests from many
concurrent clients for a bounded time, then reports requests, status counts, latency
percentiles and the server's resident memory at the start (after warm-up) and at the end.
Valid requests (float rows, images, texts, v2, rank) come from a pool of seeded requests whose
answers were first taken alone: every 200 must be bit-identical to that solo answer, whatever
it was fused with. Crafted requests (inputs beyond the dtype's range, overflowing outputs,
extreme options, bad targets, image and compression bombs, truncated uploads, rank requests past
the work limit) are mixed in and must each get a 4xx; a few large valid images (2048 x 2048
noise) load the decode threads. A prober asks for liveness every 0.1 s throughout. Exits
non-zero if any answer other than 200 or a deliberate 4xx/503 came back (a 5xx, a failed
connection), a valid answer differed from its solo answer (its fresh ``prediction_id``
aside), a crafted one was not refused, liveness p99 reached 1 s, a metric is infinite or NaN,
or memory grew by 5% or more over the second half (the bounded feedback store, 64 MiB by
default, fills during the first; RSS is sampled every 30 s).

    python -m bench.soak --duration 300 --concurrency 64 --max-requests 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import MODELS, REPO, example_inputs
from bench.soak_inputs import (
    CRAFTED_IMAGES,
    large_image_request,
    valid_image,
    valid_rank,
    valid_text,
)

Request = tuple[str, str, dict[str, Any]]  # method, path, httpx keyword arguments
_JSON = {"content-type": "application/json"}
OVERSIZE = b"x" * (9 * 1024 * 1024)
"""Above the 8 MiB default body limit: the server answers 413 and closes the connection before
reading it, so the client often sees the connection close while it is still sending."""


def _rows(shape: list[int], count: int, seed: int) -> list[Any]:
    rows: list[Any] = example_inputs(shape, count, seed).tolist()
    return rows


POOL_SIZE = 64
"""Distinct seeded valid requests; their solo answers are taken before the traffic."""


def valid_pool() -> list[Request]:
    """The seeded valid requests of the mix (every kind: both tasks, fixed N, "auto", v2)."""
    return [_valid(random.Random(i), i) for i in range(POOL_SIZE)]


def _valid(rng: random.Random, seed: int) -> Request:
    """A seeded valid request: v1 classifiers, "auto" regression, v2."""
    pick = rng.random() * 0.75
    if pick >= 0.6:
        kinds = (valid_image, valid_text, valid_rank)
        return kinds[int((pick - 0.6) / 0.05)](rng, seed)
    if pick < 0.25:
        body = {"inputs": _rows([64], rng.randint(1, 8), seed), "n_samples": 100, "seed": seed}
        return "POST", "/v1/models/digits-mlp/predict", {"json": body}
    if pick < 0.40:
        body = {"inputs": _rows([1, 8, 8], rng.randint(1, 4), seed), "n_samples": 100,
                "seed": seed}  # fmt: skip
        return "POST", "/v1/models/digits-cnn/predict", {"json": body}
    if pick < 0.50:
        body = {"inputs": [[0.01 * rng.random() for _ in range(10)]], "n_samples": "auto",
                "seed": seed}  # fmt: skip
        return "POST", "/v1/models/diabetes-mlp/predict", {"json": body}
    tensor = {"name": "input", "shape": [1, 64], "datatype": "FP32",
              "data": _rows([64], 1, seed)[0]}  # fmt: skip
    body = {"inputs": [tensor], "parameters": {"n_samples": 50, "seed": seed}}
    return "POST", "/v2/models/digits-mlp/infer", {"json": body}


_REGRESSION = "/v1/models/diabetes-mlp/predict"
_CLASSIFIER = "/v1/models/digits-mlp/predict"
CRAFTED: list[Request] = [
    ("POST", _REGRESSION, {"json": {"inputs": [[0.01] * 10], "ci_level": 0.9999999999999999}}),
    ("POST", _REGRESSION,
     {"json": {"inputs": [[0.01] * 10], "n_samples": "auto", "tolerance": 5e-324}}),
    ("POST", _REGRESSION, {"json": {"inputs": [[1e308] * 10], "n_samples": "auto"}}),
    ("POST", _REGRESSION, {"json": {"inputs": [[0.01] * 10, [3e38] * 10], "n_samples": 64}}),
    ("POST", _REGRESSION, {"json": {"inputs": [[3e38] * 10], "n_samples": "auto"}}),
    ("POST", _CLASSIFIER, {"json": {"inputs": [[1e39] * 64]}}),
    ("POST", _CLASSIFIER, {"json": {"inputs": [[10**400] + [0] * 63]}}),
    ("POST", _CLASSIFIER, {"json": {"inputs": [[1.0] * 64], "n_samples": True}}),
    ("POST", "/v1/models/digits-mlp/evaluate",
     {"json": {"inputs": [[1.0] * 64], "targets": ["\u00b2"]}}),
    ("POST", "/v1/models/digits-mlp/evaluate",
     {"json": {"inputs": [[1.0] * 64], "targets": ["7" * 5000]}}),
    ("POST", "/v2/models/digits-mlp/infer", {"json": {"inputs": [
        {"name": "input", "shape": [1, 64], "datatype": "FP64", "data": [1e308] * 64}]}}),
    *CRAFTED_IMAGES,
]  # fmt: skip
"""Requests crafted to fail inside a fused run or on the way in: each must get a 4xx."""


def traffic(rng: random.Random, pool: list[Request]) -> tuple[Request, str]:
    """One request of the mix and its kind (``valid:<i>``, ``crafted``, ``other``): ~55%
    valid predictions from the pool, ~10% crafted, ~25% invalid, ~10% health/metrics."""
    pick = rng.random()
    if pick < 0.005:
        return large_image_request(), "other"
    if pick < 0.55:
        index = rng.randrange(len(pool))
        return pool[index], f"valid:{index}"
    if pick < 0.65:
        return rng.choice(CRAFTED), "crafted"
    return _invalid_or_probe(rng, pick), "other"


def _invalid_or_probe(rng: random.Random, pick: float) -> Request:
    mlp = "/v1/models/digits-mlp/predict"
    bad: list[Request] = [
        ("POST", mlp, {"json": {"inputs": [[1, 2, 3]]}}),
        ("POST", mlp, {"content": b'{"inputs": [[1,', "headers": _JSON}),
        ("POST", "/v1/models/nope/predict", {"json": {"inputs": [[0]]}}),
        ("POST", mlp, {"json": {"inputs": [[0] * 64], "n_samples": 10**6}}),
        ("POST", mlp, {"content": b'{"inputs": [[NaN]]}', "headers": _JSON}),
        ("POST", mlp, {"content": b"a=1", "headers": {"content-type": "text/plain"}}),
        ("POST", mlp, {"content": OVERSIZE, "headers": _JSON}),
        ("POST", "/v2/models/digits-mlp/infer", {"json": {"inputs": [{"name": "input"}]}}),
    ]
    probes: list[Request] = [
        ("GET", "/v2/health/ready", {}),
        ("GET", "/metrics", {}),
        ("GET", "/v1/models", {}),
    ]
    if pick < 0.90:
        # the 9 MiB body is rare: it is mostly the client's own cost
        weights = [10, 10, 10, 10, 10, 10, 1, 10]
        return rng.choices(bad, weights=weights)[0]
    return rng.choice(probes)


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def solo_answers(base: str, pool: list[Request]) -> list[Any]:
    """Each pool request's answer, sent alone (one at a time, nothing to fuse with)."""
    answers = []
    with httpx.Client(base_url=base, timeout=60) as client:
        for method, path, kwargs in pool:
            response = client.request(method, path, **kwargs)
            response.raise_for_status()
            answers.append(response.json())
    return answers


async def run_clients(
    base: str,
    args: argparse.Namespace,
    solo: list[Any],
    checks: collections.Counter[str],
    liveness: list[float],
) -> tuple[collections.Counter[str], list[float]]:
    """Status counts (as text) and latencies of ``args.concurrency`` clients' requests;
    ``checks`` counts valid answers identical to / different from their solo answer and
    crafted requests refused / not refused; ``liveness`` gets the prober's latencies."""
    pool = valid_pool()
    statuses: collections.Counter[str] = collections.Counter()
    latencies: list[float] = []
    deadline = time.monotonic() + args.duration
    budget = [args.max_requests]
    # Idle connections are dropped by the client before the server's keep-alive timeout
    # (uvicorn's timeout_keep_alive, 5 s) closes them: otherwise a request sent on a
    # connection the server is closing at that moment fails in transit (the keep-alive race
    # every HTTP/1.1 client has).
    limits = httpx.Limits(max_connections=args.concurrency, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:

        async def worker(index: int) -> None:
            rng = random.Random(index)
            while time.monotonic() < deadline and budget[0] > 0:
                budget[0] -= 1
                if rng.random() < 0.03:
                    await _feedback_round(client, rng, statuses, checks)
                    continue
                (method, path, kwargs), kind = traffic(rng, pool)
                started = time.perf_counter()
                try:
                    response = await client.request(method, path, **kwargs)
                    statuses[str(response.status_code)] += 1
                    _check(kind, response, solo, checks)
                except httpx.HTTPError as error:
                    oversize = kwargs.get("content") is OVERSIZE
                    label = (
                        "413 (closed while sending)"
                        if oversize
                        else f"{type(error).__name__} {method} {path} ({kind})"
                    )
                    statuses[label] += 1
                latencies.append(time.perf_counter() - started)

        async def prober() -> None:
            async with httpx.AsyncClient(base_url=base, timeout=30) as alone:
                while time.monotonic() < deadline and budget[0] > 0:
                    started = time.perf_counter()
                    await alone.get("/v2/health/live")
                    liveness.append(time.perf_counter() - started)
                    await asyncio.sleep(0.1)

        await asyncio.gather(prober(), *(worker(i) for i in range(args.concurrency)))
    return statuses, latencies


async def _feedback_round(
    client: httpx.AsyncClient,
    rng: random.Random,
    statuses: collections.Counter[str],
    checks: collections.Counter[str],
) -> None:
    """A regression prediction, then its labelled feedback: a plain target (200) or an
    overflowing one (1e308, crafted: must be a 4xx and leave the metrics finite)."""
    row = [[0.01 * rng.random() for _ in range(10)]]
    try:
        predicted = await client.post(_REGRESSION, json={"inputs": row, "n_samples": 50})
        statuses[str(predicted.status_code)] += 1
        if predicted.status_code != 200 or "prediction_id" not in predicted.json():
            return
        crafted = rng.random() < 0.3
        body = {"prediction_id": predicted.json()["prediction_id"],
                "targets": [1e308 if crafted else 150.0]}  # fmt: skip
        answer = await client.post("/v1/models/diabetes-mlp/feedback", json=body)
        statuses[str(answer.status_code)] += 1
        if crafted:
            _check("crafted", answer, [], checks)
    except httpx.HTTPError as error:
        statuses[type(error).__name__] += 1


def _numbers(answer: Any) -> Any:
    """An answer without its ``prediction_id`` (fresh for every v1 prediction)."""
    if isinstance(answer, dict):
        return {key: value for key, value in answer.items() if key != "prediction_id"}
    return answer


def _check(
    kind: str, response: httpx.Response, solo: list[Any], checks: collections.Counter[str]
) -> None:
    code = response.status_code
    if kind == "crafted":
        checks["crafted_4xx" if 400 <= code < 500 else f"crafted_{code}"] += 1
    elif kind.startswith("valid:") and code == 200:
        same = _numbers(response.json()) == _numbers(solo[int(kind.removeprefix("valid:"))])
        checks["valid_identical" if same else "valid_different"] += 1


def _sample_rss(pid: int, series: list[int], stop: threading.Event) -> None:
    """The server's RSS every 30 s until ``stop``."""
    while not stop.wait(30.0):
        series.append(rss_kib(pid))


def _second_half_growth(series: list[int], end: int) -> float:
    """RSS growth (%) from the sample at half time to the end."""
    if not series:
        return 0.0
    middle = series[(len(series) - 1) // 2]
    return round(100 * (end - middle) / middle, 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of traffic")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--max-queue", type=int, default=32, help="server's max_queue")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--out", type=Path, default=None, help="write the report as JSON")
    args = parser.parse_args()
    env = {**os.environ, "MCDROP_MAX_QUEUE": str(args.max_queue), "MCDROP_LOG_LEVEL": "warning"}
    command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1",
               "--port", str(args.port), "--models-dir", str(MODELS)]  # fmt: skip
    server = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{args.port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        solo = solo_answers(base, valid_pool())
        warm = argparse.Namespace(**{**vars(args), "duration": 10.0, "max_requests": 2000})
        asyncio.run(run_clients(base, warm, solo, collections.Counter(), []))
        rss_start = rss_kib(server.pid)
        started = time.monotonic()
        checks: collections.Counter[str] = collections.Counter()
        liveness: list[float] = []
        series: list[int] = []
        sampling = threading.Event()
        sampler = threading.Thread(target=_sample_rss, args=(server.pid, series, sampling))
        sampler.start()
        statuses, latencies = asyncio.run(run_clients(base, args, solo, checks, liveness))
        sampling.set()
        sampler.join()
        elapsed = time.monotonic() - started
        rss_end = rss_kib(server.pid)
        healthy = httpx.get(f"{base}/v2/health/ready", timeout=5).status_code == 200
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        finite = not any(
            value in ("inf", "+inf", "-inf", "nan")
            for line in metrics.splitlines()
            if line.startswith("mcdrop_") and not line.startswith("mcdrop_request_duration")
            for value in [line.rsplit(" ", 1)[-1].lower()]
        )
    finally:
        server.terminate()
        server.wait(timeout=60)
    ordered = sorted(latencies)
    expected = {"200", "400", "404", "413", "415", "422", "503", "413 (closed while sending)"}
    unexpected = sum(n for code, n in statuses.items() if code not in expected)
    report = {
        "duration_s": round(elapsed, 1),
        "concurrency": args.concurrency,
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "statuses": dict(sorted(statuses.items())),
        "p50_ms": round(statistics.median(ordered) * 1e3, 1),
        "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1e3, 1),
        "liveness_probes": len(liveness),
        "liveness_p99_ms": round(sorted(liveness)[int(0.99 * (len(liveness) - 1))] * 1e3, 1),
        "liveness_max_ms": round(max(liveness) * 1e3, 1),
        "rss_start_mib": round(rss_start / 1024, 1),
        "rss_end_mib": round(rss_end / 1024, 1),
        "rss_growth_pct": round(100 * (rss_end - rss_start) / rss_start, 2),
        "rss_every_30s_mib": [round(kib / 1024, 1) for kib in series],
        "rss_growth_second_half_pct": _second_half_growth(series, rss_end),
        "unexpected": unexpected,
        "checks": dict(sorted(checks.items())),
        "ready_after": healthy,
        "metrics_finite": finite,
    }
    print(json.dumps(report, indent=1))
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    # A crafted request may also meet a full queue first (503, like any request).
    refused = set(checks) <= {"crafted_4xx", "crafted_503", "valid_identical"}
    lively = report["liveness_p99_ms"] < 1000
    # Flat: the bounded stores (feedback_max_bytes, 64 MiB) fill during the first half; a leak
    # would keep growing through the second.
    flat = report["rss_growth_second_half_pct"] < 5
    ok = unexpected == 0 and refused and flat and healthy and lively
    ok = ok and finite
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
