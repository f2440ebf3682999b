"""The active-learning worked example: its steps on a tiny budget, and the committed results."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from sklearn.datasets import load_digits

from tests.support import REPO_ROOT, load_script

RESULTS = REPO_ROOT / "docs" / "active-learning" / "results.json"


@pytest.fixture(scope="module")
def example() -> ModuleType:
    return load_script("active_learning")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    digits = load_digits()
    return digits.data.astype(np.float32), digits.target.astype(np.int64)


def test_split_is_disjoint_and_sized(example: ModuleType) -> None:
    settings = example.Settings()
    rows = example.split(1797, settings, seed=3)
    assert (len(rows.test), len(rows.labelled)) == (500, 50)
    everything = np.concatenate([rows.test, rows.labelled, rows.pool])
    assert sorted(everything.tolist()) == list(range(1797))


@pytest.mark.parametrize("strategy", ["batchbald", "random"])
def test_a_round_adds_distinct_pool_rows(
    example: ModuleType, data: tuple[np.ndarray, np.ndarray], strategy: str
) -> None:
    settings = example.Settings(
        initial=30, per_round=6, rounds=1, test_rows=200, n_samples=10, epochs=5, hidden=(16,)
    )
    curve = example.run_strategy(strategy, 0, data, settings)
    assert [labels for labels, _ in curve] == [30, 36]
    assert all(0.0 <= accuracy <= 1.0 for _, accuracy in curve)


def test_committed_results_match_the_documented_design(tmp_path: Path) -> None:
    record = json.loads(RESULTS.read_text())
    assert record["seeds"] == [0, 1, 2]
    assert set(record["results"]) == {"bald", "batchbald", "random"}
    for curves in record["results"].values():
        assert len(curves) == 3
        for curve in curves:
            assert [labels for labels, _ in curve] == list(range(50, 251, 20))
