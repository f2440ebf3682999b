"""The allocator setting: freed activations are reused, not faulted in again."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.engine.allocator import retain_freed_memory

# A forward-like pattern (a 16 MiB activation made, read and freed each "layer"): 5 rounds to
# warm up, then prints the minor page faults of 20 more rounds.
_PROBE = """
import resource, sys, torch
from app.engine.allocator import retain_freed_memory
print(retain_freed_memory(int(sys.argv[1])))
torch.set_num_threads(1)
x, w1, w2 = torch.ones(512, 256), torch.ones(256, 1024), torch.ones(1024, 256)
def forward():
    h = x
    for _ in range(4):
        wide = (h @ w1).repeat(8, 1)
        h = (torch.nn.functional.gelu(wide) @ w2)[:512].contiguous()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
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
