"""Load generators and process measurements of the service benchmark.

``hey`` (Debian package ``hey``, Go) and ``wrk`` (``wrk``, C) run for a fixed time after a
warm-up; without either, an httpx asyncio client sends a fixed number of requests per client
(its CPU then competes with the server's). ``pss_mib`` is a server's memory: the proportional
set size summed over its process tree, so pages shared between processes count once.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

Result = dict[str, float]
"""``rps``, ``p50_ms``, ``p99_ms``."""


def hey_load(
    url: str, body: dict[str, Any], concurrency: int, seconds: float, pid: int | None = None
) -> Result:
    """``hey`` with ``concurrency`` workers for ``seconds`` (after a 2 s warm-up); with ``pid``,
    also ``cpu_ms``: the CPU time of that server's process tree per answered request."""
    with tempfile.TemporaryDirectory() as folder:
        body_file = Path(folder) / "body.json"
        body_file.write_text(json.dumps(body))
        options = ["-c", str(concurrency), "-m", "POST", "-T", "application/json"]
        options += ["-D", str(body_file), "-t", "60"]
        subprocess.run(["hey", "-z", "2s", *options, url], capture_output=True, check=True)
        cpu_before = tree_cpu_s(pid) if pid is not None else 0.0
        out = subprocess.run(
            ["hey", "-z", f"{seconds:g}s", *options, url],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    codes = re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)
    if any(code != "200" for code, _ in codes) or "Error distribution" in out:
        raise RuntimeError(f"hey saw failed requests:\n{out}")
    cpu_s = tree_cpu_s(pid) - cpu_before if pid is not None else 0.0
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rps is not None, out
    result = {"rps": float(rps.group(1)), "p50_ms": _hey_ms(out, "50%")}
    result["p99_ms"] = _hey_ms(out, "99%")
    if pid is not None:
        result["cpu_ms"] = 1000 * cpu_s / max(1, sum(int(count) for _, count in codes))
    return result


def _hey_ms(out: str, label: str) -> float:
    """A percentile of hey's latency distribution (the slowest when too few requests)."""
    match = re.search(rf"{label} in ([\d.]+) secs", out) or re.search(r"Slowest:\s+([\d.]+)", out)
    assert match is not None, out
    return float(match.group(1)) * 1000


def wrk_load(url: str, body: dict[str, Any], concurrency: int, seconds: float) -> Result:
    """``wrk`` with ``concurrency`` connections for ``seconds``: requests/s, p50 and p99."""
    with tempfile.TemporaryDirectory() as folder:
        body_file = Path(folder) / "body.json"
        body_file.write_text(json.dumps(body))
        script = Path(folder) / "post.lua"
        script.write_text(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f'local f = io.open("{body_file}", "r")\nwrk.body = f:read("*a")\nf:close()\n'
        )
        options = ["-t1", f"-c{concurrency}", "--timeout", "60s", "--latency", "-s", str(script)]
        subprocess.run(["wrk", "-d2s", *options, url], capture_output=True, check=True)
        out = subprocess.run(
            ["wrk", f"-d{seconds:g}s", *options, url], capture_output=True, text=True, check=True
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


async def httpx_load(url: str, body: dict[str, Any], concurrency: int, per_client: int) -> Result:
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


def pss_mib(pid: int) -> float:
    """Proportional set size of ``pid`` and its descendants, in MiB (0 for gone processes)."""
    total_kib = 0
    for process in [pid, *_descendants(pid)]:
        try:
            rollup = Path(f"/proc/{process}/smaps_rollup").read_text()
        except OSError:
            continue
        match = re.search(r"^Pss:\s+(\d+) kB", rollup, re.MULTILINE)
        total_kib += int(match.group(1)) if match else 0
    return total_kib / 1024


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *_descendants(child)]
    return found


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants."""
    ticks = 0
    for process in [pid, *_descendants(pid)]:
        try:
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")
