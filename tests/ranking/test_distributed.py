"""``mcdrop rank --ray``: Ray Data actors pick the same rows as the local path.

One Ray run (it costs tens of seconds on two shared cores): BatchBALD, which needs both halves
right (each block's top BALD candidates with their passes, then the joint choice).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from app.cli import main

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'mcdrop[ray]')")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _picks(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_ray_picks_the_local_rows(local_ray: None, tmp_path: Path) -> None:
    pool = tmp_path / "pool.csv"
    np.savetxt(pool, load_digits().data[:90], delimiter=",", fmt="%g")
    common = ["rank", "digits-cnn", "--data", str(pool), "--k", "5", "--strategy", "batchbald",
              "--candidates", "12", "--n-samples", "20", "--seed", "8", "--chunk-rows", "25",
              "--quiet"]  # fmt: skip
    # Ray's actors sample with one torch thread; so does the local run here, so that both
    # compute the same bits (BLAS may round a row differently with another thread split).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*common, "--out", str(tmp_path / "local.csv")]) == 0
    finally:
        torch.set_num_threads(threads)
    assert main([*common, "--ray", "--ray-actors", "2", "--out", str(tmp_path / "ray.csv")]) == 0
    local, remote = _picks(tmp_path / "local.csv"), _picks(tmp_path / "ray.csv")
    assert [row["index"] for row in remote] == [row["index"] for row in local]
    assert [float(r["score"]) for r in remote] == [float(r["score"]) for r in local]
    assert [list(row.values())[2:] for row in remote] == [list(row.values())[2:] for row in local]
