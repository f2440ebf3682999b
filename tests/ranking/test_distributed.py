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
    assert main([*common, "--out", str(tmp_path / "local.csv")]) == 0
    assert main([*common, "--ray", "--ray-actors", "2", "--out", str(tmp_path / "ray.csv")]) == 0
    local, remote = _picks(tmp_path / "local.csv"), _picks(tmp_path / "ray.csv")
    assert [row["index"] for row in remote] == [row["index"] for row in local]
    assert [float(r["score"]) for r in remote] == pytest.approx(
        [float(r["score"]) for r in local], abs=1e-6
    )
    assert [list(row.values())[2:] for row in remote] == [list(row.values())[2:] for row in local]
