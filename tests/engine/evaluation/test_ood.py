"""AUROC and thresholds for separating in-distribution from OOD rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from app.engine.evaluation.ood import auroc, kept_share, roc_curve, threshold_for_share


def _sklearn_auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    labels = np.r_[np.zeros(len(in_scores)), np.ones(len(out_scores))]
    return float(roc_auc_score(labels, np.r_[in_scores, out_scores]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_sklearn_with_many_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    in_scores = rng.integers(0, 6, size=70).astype(float)
    out_scores = rng.integers(2, 9, size=45).astype(float)
    result = auroc(torch.from_numpy(in_scores), torch.from_numpy(out_scores))
    assert float(result) == pytest.approx(_sklearn_auroc(in_scores, out_scores), abs=1e-12)


def test_auroc_matches_sklearn_on_continuous_scores() -> None:
    rng = np.random.default_rng(9)
    in_scores, out_scores = rng.normal(size=200), rng.normal(0.8, 1.0, size=150)
    result = auroc(torch.from_numpy(in_scores), torch.from_numpy(out_scores))
    assert float(result) == pytest.approx(_sklearn_auroc(in_scores, out_scores), abs=1e-12)


def test_auroc_extremes_and_ties() -> None:
    low, high = torch.tensor([0.0, 0.1]), torch.tensor([0.5, 0.9, 1.0])
    assert float(auroc(low, high)) == 1.0
    assert float(auroc(high, low)) == 0.0
    assert float(auroc(torch.ones(3), torch.ones(4))) == 0.5
    with pytest.raises(ValueError, match="at least one"):
        auroc(torch.ones(3), torch.ones(0))


def test_roc_curve_runs_from_origin_to_one_and_its_area_is_the_auroc() -> None:
    rng = np.random.default_rng(4)
    in_scores = torch.from_numpy(rng.integers(0, 5, size=40).astype(float))
    out_scores = torch.from_numpy(rng.integers(1, 7, size=30).astype(float))
    fpr, tpr = roc_curve(in_scores, out_scores)
    assert (fpr[0].item(), tpr[0].item(), fpr[-1].item(), tpr[-1].item()) == (0, 0, 1, 1)
    assert bool((fpr.diff() >= 0).all()) and bool((tpr.diff() >= 0).all())
    area = float(torch.trapezoid(tpr, fpr))
    assert area == pytest.approx(float(auroc(in_scores, out_scores)), abs=1e-12)


def test_threshold_keeps_the_target_share() -> None:
    scores = torch.arange(1.0, 21.0)
    threshold = threshold_for_share(scores, 0.95)
    assert float(threshold) == 19.0  # ceil(0.95 * 20) = 19th smallest, not 20
    assert float(kept_share(scores, threshold)) == 0.95
    assert float(threshold_for_share(scores, 1.0)) == 20.0
    assert float(threshold_for_share(scores, 0.01)) == 1.0


def test_threshold_with_ties_keeps_at_least_the_share() -> None:
    scores = torch.tensor([0.0, 0.0, 0.0, 1.0])
    threshold = threshold_for_share(scores, 0.5)
    assert float(threshold) == 0.0 and float(kept_share(scores, threshold)) == 0.75
    with pytest.raises(ValueError, match="keep"):
        threshold_for_share(scores, 0.0)
