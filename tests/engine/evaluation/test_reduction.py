"""The per-row (``reduction="none"``) forms of the metrics: closed forms, and their mean is the
aggregate form bit for bit (feedback scores rows with the same functions evaluation averages)."""

from __future__ import annotations

import math

import pytest
import torch

from app.engine.evaluation.classification import (
    brier_score,
    negative_log_likelihood,
    set_coverage,
)
from app.engine.evaluation.regression import gaussian_log_likelihood, interval_coverage

PROBS = torch.tensor([[0.7, 0.3], [0.2, 0.8], [1.0, 0.0]], dtype=torch.float64)
LABELS = torch.tensor([1, 1, 1])


def test_classification_rows_closed_forms() -> None:
    nll = negative_log_likelihood(PROBS, LABELS, reduction="none")
    # -ln 0.3, -ln 0.8, and a zero probability floored at 1e-12.
    assert nll.tolist() == pytest.approx([-math.log(0.3), -math.log(0.8), -math.log(1e-12)])
    brier = brier_score(PROBS, LABELS, reduction="none")
    assert brier.tolist() == pytest.approx([0.49 + 0.49, 0.04 + 0.04, 1.0 + 1.0])
    sets = torch.tensor([[True, False], [True, True], [True, False]])
    assert set_coverage(sets, LABELS, reduction="none").tolist() == [False, True, False]
    assert set_coverage(sets, LABELS).item() == pytest.approx(1 / 3)


def test_classification_means_are_the_aggregate_forms() -> None:
    for metric in (negative_log_likelihood, brier_score):
        rows = metric(PROBS, LABELS, reduction="none")
        assert rows.shape == (3,)
        assert torch.equal(rows.mean(), metric(PROBS, LABELS))


def test_gaussian_log_likelihood_closed_form() -> None:
    # log N(1 | 0, 4) = -0.5 log(8 pi) - 1/8; a second output adds log N(0 | 0, 1).
    mean, variance = torch.zeros(2, 2), torch.tensor([[4.0, 1.0], [1.0, 1.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    rows = gaussian_log_likelihood(mean, variance, target, reduction="none")
    first = -0.5 * math.log(8 * math.pi) - 0.125 - 0.5 * math.log(2 * math.pi)
    assert rows.tolist() == pytest.approx([first, -math.log(2 * math.pi)])
    assert torch.equal(rows.mean(), gaussian_log_likelihood(mean, variance, target))


def test_interval_hits_per_element() -> None:
    lower, upper = torch.zeros(2, 2), torch.ones(2, 2)
    target = torch.tensor([[0.0, 1.0], [0.5, 1.5]])  # closed interval: both ends inside
    hits = interval_coverage(lower, upper, target, reduction="none")
    assert hits.tolist() == [[True, True], [True, False]]
    assert interval_coverage(lower, upper, target).item() == 0.75
