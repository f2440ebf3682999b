"""The breast-cancer shift case, small and fast: the shift score finds the x1.8 rows, MI not."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.support import load_script


def test_shift_score_catches_scaled_measurements(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    torch.set_num_threads(1)
    example = load_script("shift_example")
    result = example.breast_cancer(tmp_path, epochs=40, hidden=16)
    areas = result["auroc"]
    assert areas["shift_score"] >= 0.95
    assert areas["mutual_information"] < 0.6  # the failure the shift score is there for
    flags = result["flags"]
    assert flags["shifted"]["shift"] > 0.9
    assert abs(flags["test"]["shift"] - example.FALSE_ALARM) <= 0.05
    assert result["quality"]["shifted"]["accuracy"] < 0.8
