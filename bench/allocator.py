"""Page faults of a forward-like allocation pattern with and without ``allocator_retain_mib``.

    python -m bench.allocator [--runs 5] [--retain-mib 1024]

A forward keeps its layers' activations alive, then frees them all. Each run is a fresh process
that holds four 16 MiB activations at once, frees them, 10 rounds to warm up, then counts the
minor page faults of 20 more rounds; runs with the setting and with glibc's defaults are
interleaved so both see the same machine. glibc's default hands the freed heap top back to the
OS (its trim threshold follows the largest freed block), so each round faults fresh pages in;
with the setting the same pages serve again. How many faults the default side takes depends on
the C library's version and heuristics, which is why this is a benchmark and not a test
(tests/engine/test_allocator.py checks what mcdrop controls: that the setting is applied).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

_PROBE = """
import resource, sys, torch
from app.engine.allocator import retain_freed_memory
print(retain_freed_memory(int(sys.argv[1])))
torch.set_num_threads(1)
x, w1 = torch.ones(512, 256), torch.ones(256, 1024)
def forward():
    kept = [(x @ w1).repeat(8, 1) for _ in range(4)]
    return sum(float(k[0, 0]) for k in kept)
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    forward()
before = faults()
for _ in range(20):
    forward()
print(faults() - before)
"""
ROUNDS = 20
ACTIVATION_PAGES = 16 * 2**20 // 4096
"""Pages of one 16 MiB activation."""


def faults(retain_bytes: int) -> tuple[bool, int]:
    """(glibc took the setting, minor page faults of the timed rounds) of one fresh process."""
    run = subprocess.run(
        [sys.executable, "-c", _PROBE, str(retain_bytes)],
        capture_output=True,
        text=True,
        check=True,
    )
    applied, count = run.stdout.split()
    return applied == "True", int(count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--retain-mib", type=int, default=1024)
    args = parser.parse_args(argv)
    retained, default = [], []
    for _ in range(args.runs):
        applied, count = faults(args.retain_mib * 2**20)
        retained.append(count)
        default.append(faults(0)[1])
    for label, counts in (("retained", retained), ("glibc default", default)):
        per_round = statistics.median(counts) / ROUNDS
        print(
            f"{label}: median {statistics.median(counts)} faults over {ROUNDS} rounds "
            f"({per_round:.0f} per round, {per_round / ACTIVATION_PAGES:.2f} activations); "
            f"runs {counts}"
        )
    print(f"setting applied: {applied}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
