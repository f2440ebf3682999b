"""Start-up time of ``mcdrop models --url``: the whole command, as a person runs it.

    python bench/cli_startup.py --url http://127.0.0.1:8080 [--runs 9] [--baseline DIR]

Each run is a fresh process (``python -m app.cli models --url URL``); the median and the spread
of the wall times are printed, and whether the command imported torch. ``--baseline DIR`` (a
folder holding another version's ``app/``, e.g. from ``git archive``) times that version too,
its runs interleaved with these so both see the same machine load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

_PROBE = (
    "import sys; from app.cli import main; code = main(['models', '--url', sys.argv[1]]); "
    "print('torch imported:', 'torch' in sys.modules, file=sys.stderr); raise SystemExit(code)"
)


def _env(source: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    return env


def time_run(url: str, source: Path | None) -> float:
    """Wall seconds of one fresh ``mcdrop models --url`` process (``source``'s app if given)."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "app.cli", "models", "--url", url],
        check=True,
        stdout=subprocess.DEVNULL,
        env=_env(source),
        cwd=source,  # ``-m`` puts the working folder first on sys.path
    )
    return time.perf_counter() - started


def report(label: str, url: str, seconds: list[float], source: Path | None) -> str:
    """Median, spread, and whether that version's command imports torch."""
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE, url],
        capture_output=True,
        text=True,
        check=True,
        env=_env(source),
        cwd=source,
    )
    return (
        f"{label}: median {statistics.median(seconds):.3f} s over {len(seconds)} runs "
        f"(min {min(seconds):.3f}, max {max(seconds):.3f}); {probe.stderr.strip()}"
    )


def main() -> None:
    """Time the runs (interleaved with the baseline's), then print both medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--baseline", type=Path, help="folder holding another version's app/")
    args = parser.parse_args()
    sources: dict[str, Path | None] = {"this version": None}
    if args.baseline is not None:
        sources["baseline"] = args.baseline.resolve()
    seconds: dict[str, list[float]] = {label: [] for label in sources}
    for _ in range(args.runs):
        for label, source in sources.items():
            seconds[label].append(time_run(args.url, source))
    for label, source in sources.items():
        print(report(f"mcdrop models --url, {label}", args.url, seconds[label], source))


if __name__ == "__main__":
    main()
