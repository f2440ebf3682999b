"""Calibrating a threshold on in-distribution statistics and checking it on OOD ones."""

from __future__ import annotations

import math

import pytest
import torch

from app.engine.evaluation.calibration import calibrate
from app.engine.stats import ClassificationStats, classification_stats


def _stats(disagreement: list[float]) -> ClassificationStats:
    """Two passes per row: (0.5 ± d/2, 0.5 ∓ d/2); MI grows with d."""
    rows = []
    for d in disagreement:
        rows.append([[0.5 + d / 2, 0.5 - d / 2], [0.5 - d / 2, 0.5 + d / 2]])
    probs = torch.tensor(rows, dtype=torch.float64).transpose(0, 1)
    return classification_stats(probs, 0.9)


def test_threshold_keeps_the_share_and_flags_ood_rows() -> None:
    in_stats = _stats([0.0, 0.1, 0.2, 0.3, 0.4])
    out_stats = _stats([0.35, 0.9, 1.0])
    result = calibrate(in_stats, "mutual_information", 0.8, out_stats)
    # ceil(0.8 * 5) = 4: the threshold is the MI of d = 0.3; every OOD row lies above it.
    assert result.threshold == pytest.approx(float(in_stats.mutual_information[3]))
    assert (result.in_rows, result.in_kept, result.out_rows) == (5, 0.8, 3)
    assert result.out_flagged == pytest.approx(1.0)
    assert result.auroc is not None
    # OOD d = 0.35 beats in d = 0.3 and below: 14 of 15 pairs ordered, so AUROC = 14 / 15.
    assert result.auroc["mutual_information"] == pytest.approx(14 / 15)
    # Variation ratio is 0 for d = 0 and 0.5 otherwise: 3 ordered pairs + 12 ties / 2 = 9 / 15.
    assert result.auroc["variation_ratio"] == pytest.approx(0.6)
    assert math.isclose(result.auroc["predictive_entropy"], 0.5)  # p̄ = (0.5, 0.5) everywhere


def test_without_ood_rows_only_the_threshold() -> None:
    result = calibrate(_stats([0.0, 0.5]), "predictive_entropy", 1.0)
    assert result.threshold == pytest.approx(math.log(2))
    assert result.auroc is None and result.out_flagged is None
