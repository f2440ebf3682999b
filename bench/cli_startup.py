"""Start-up time of ``mcdrop models --url``: the whole command, as a person runs it.

    python bench/cli_startup.py --url http://127.0.0.1:8080 [--runs 9]

Each run is a fresh process (``python -m app.cli models --url URL``); the median and the spread
of the wall times are printed, and whether the command imported torch.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

_PROBE = (
    "import sys; from app.cli import main; code = main(['models', '--url', sys.argv[1]]); "
    "print('torch imported:', 'torch' in sys.modules, file=sys.stderr); raise SystemExit(code)"
)


def time_runs(url: str, runs: int) -> list[float]:
    """Wall seconds of ``runs`` fresh ``mcdrop models --url`` processes."""
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "app.cli", "models", "--url", url],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    """Time the runs, then print the median and whether torch was imported."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    seconds = time_runs(args.url, args.runs)
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE, args.url], capture_output=True, text=True, check=True
    )
    print(
        f"mcdrop models --url: median {statistics.median(seconds):.3f} s over {args.runs} runs "
        f"(min {min(seconds):.3f}, max {max(seconds):.3f}); {probe.stderr.strip()}"
    )


if __name__ == "__main__":
    main()
