"""The allocator setting: freed activations are reused, not faulted in again."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.engine.allocator import retain_freed_memory

# A forward-like pattern (four 16 MiB activations alive at once, then all freed, as a forward
# keeps its layers' outputs): 10 rounds to warm up, then prints the minor page faults of 20 more
# rounds. glibc's default hands the freed heap top back (its trim threshold follows the largest
# block), so every round faults fresh pages; one activation at a time was not enough to show it
# reliably (glibc then reused the pages on some runs).
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


def _faults(retain_bytes: int) -> tuple[bool, int]:
    run = subprocess.run(
        [sys.executable, "-c", _PROBE, str(retain_bytes)],
        capture_output=True,
        text=True,
        check=True,
    )
    applied, faults = run.stdout.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_retained_memory_is_reused_without_page_faults() -> None:
    applied, faults = _faults(2**30)
    default_applied, default_faults = _faults(0)
    assert applied and not default_applied
    one_activation = 16 * 2**20 // 4096  # pages of one 16 MiB activation
    assert default_faults > 20 * one_activation  # glibc's default: fresh pages every round
    assert faults < 2 * one_activation  # retained: the same pages again


def test_zero_keeps_the_defaults() -> None:
    assert retain_freed_memory(0) is False
