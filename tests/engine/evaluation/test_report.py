"""The evaluation reports gather the pure metrics consistently."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.engine.evaluation import (
    accuracy,
    brier_score,
    classification_report,
    expected_calibration_error,
    interval_coverage,
    mc_test_log_likelihood,
    negative_log_likelihood,
    regression_report,
)
from app.engine.evaluation.report import histogram
from app.engine.stats import predictive_interval


def _probs(seed: int, passes: int = 20, rows: int = 60, classes: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(passes, rows, classes, generator=generator, dtype=torch.float64)
    return torch.softmax(logits, dim=-1)


def test_classification_report_matches_the_metric_functions() -> None:
    probs = _probs(0)
    targets = torch.arange(60) % 3
    report = classification_report(probs, targets, coverages=(0.5, 1.0))
    mean = probs.mean(dim=0)
    correct = mean.argmax(-1) == targets
    assert report.accuracy == float(accuracy(mean, targets))
    assert report.nll == float(negative_log_likelihood(mean, targets))
    assert report.brier == float(brier_score(mean, targets))
    assert report.ece == float(expected_calibration_error(mean.max(-1).values, correct))
    assert report.selective[-1].coverage == 1.0
    assert report.selective[-1].accuracy == pytest.approx(report.accuracy)
    assert report.aurc == report.aurc_by_score["predictive_entropy"]
    assert set(report.aurc_by_score) == {
        "predictive_entropy",
        "mutual_information",
        "variation_ratio",
        "confidence",
    }
    assert sum(b.count for b in report.reliability) == 60 and len(report.reliability) == 15
    assert len(report.risk_coverage.coverage) == 100
    assert report.risk_coverage.risk[-1] == pytest.approx(1.0 - report.accuracy)
    entropy = report.histograms["predictive_entropy"]
    assert sum(entropy.counts["correct"]) + sum(entropy.counts["wrong"]) == 60
    assert sum(entropy.counts["wrong"]) == int((~correct).sum())


def test_ranking_score_changes_the_selective_ranking() -> None:
    probs, targets = _probs(1), torch.arange(60) % 3
    by_entropy = classification_report(probs, targets, ranking_score="predictive_entropy")
    by_ratio = classification_report(probs, targets, ranking_score="variation_ratio")
    assert by_ratio.ranking_score == "variation_ratio"
    assert by_ratio.aurc == by_entropy.aurc_by_score["variation_ratio"]


def test_regression_report_matches_the_metric_functions() -> None:
    rng = np.random.default_rng(2)
    preds = torch.from_numpy(rng.normal(size=(30, 40, 1)))
    targets = torch.from_numpy(rng.normal(scale=1.5, size=(40, 1)))
    report = regression_report(preds, 0.8, targets, level=0.9)
    lower, upper = predictive_interval(preds, 0.8, 0.9)
    assert report.pi_level == 0.9
    assert report.pi_coverage == float(interval_coverage(lower, upper, targets))
    assert report.log_likelihood == pytest.approx(
        float(mc_test_log_likelihood(preds, 0.8, targets))
    )
    assert report.rmse == pytest.approx(float((preds.mean(0) - targets).pow(2).mean().sqrt()))
    coverages = [p.coverage for p in report.interval_calibration]
    assert coverages == sorted(coverages)  # nested central intervals
    counts = report.histograms["std"].counts
    assert sum(counts["inside the interval"]) + sum(counts["outside"]) == 40


def test_histogram_bins_from_zero_and_includes_the_top_edge() -> None:
    values = torch.tensor([0.0, 0.5, 1.0, 0.2])
    result = histogram(values, {"all": torch.ones(4, dtype=torch.bool)}, bins=2)
    assert result.edges == [0.0, 0.5, 1.0]
    assert result.counts == {"all": [2, 2]}


def test_histogram_of_equal_values_gets_a_unit_range() -> None:
    values = torch.full((3,), 49.0)
    result = histogram(values, {"all": torch.ones(3, dtype=torch.bool)}, bins=2, from_zero=False)
    assert result.edges == [48.5, 49.0, 49.5]
    assert result.counts == {"all": [0, 3]}
