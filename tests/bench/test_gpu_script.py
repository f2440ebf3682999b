"""bench/gpu.sh stops in seconds, before any benchmark, when the device it is asked for is
missing (its full run is checked by hand: ``MCDROP_DEVICE=cpu bench/gpu.sh --quick``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.support import REPO_ROOT

SCRIPT = REPO_ROOT / "bench" / "gpu.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU it would run the benchmarks")
def test_cuda_without_a_gpu_stops_before_the_benchmarks(tmp_path: Path) -> None:
    env = {**os.environ, "MCDROP_DEVICE": "cuda", "OUT": str(tmp_path), "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert "no CUDA device is available" in result.stderr
    assert "cannot run the benchmarks on MCDROP_DEVICE=cuda" in result.stderr
    assert list(tmp_path.iterdir()) == [], "no benchmark ran"


def test_an_unknown_argument_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(SCRIPT), "--fast"],
        env={**os.environ, "OUT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "unknown argument: --fast" in result.stderr
