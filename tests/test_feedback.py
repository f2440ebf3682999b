"""The feedback store and the scores of labels, against hand-computed answers."""

from __future__ import annotations

import math

import pytest
import torch

from app.engine.conformal import ConformalOutput
from app.engine.predictor import Prediction
from app.engine.stats import classification_stats, regression_stats
from app.errors import FeedbackGoneError, FeedbackNotFoundError, InvalidInputError
from app.feedback import (
    CONFORMAL,
    PREDICTION_SET,
    PREDICTIVE,
    FeedbackStore,
    brier_scores,
    gaussian_log_likelihood,
    held_prediction,
    score_feedback,
    score_matches,
)


def _regression(conformal: bool = False) -> Prediction:
    preds = torch.tensor([[[0.0], [10.0]], [[2.0], [10.0]]])  # N = 2, B = 2: means 1 and 10
    stats = regression_stats(preds, 1.0, 0.9)  # variances 1 + 1 = 2 and 0 + 1 = 1
    band = ConformalOutput(
        0.8, lower=torch.tensor([[0.0], [9.0]]), upper=torch.tensor([[2.0], [11.0]])
    )
    return Prediction(2, 0, 0.9, stats, None, 0.0, conformal=band if conformal else None)


def _classification() -> Prediction:
    probs = torch.tensor([[[0.7, 0.3], [0.2, 0.8]]])
    sets = ConformalOutput(0.9, sets=torch.tensor([[True, False], [True, True]]))
    return Prediction(1, 0, 0.9, classification_stats(probs, 0.9), None, 0.0, conformal=sets)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_closed_forms() -> None:
    # log N(1 | 0, 4) = -0.5 log(8 pi) - 1/8
    ll = gaussian_log_likelihood(torch.zeros(1, 1), torch.full((1, 1), 4.0), torch.ones(1, 1))
    assert ll.item() == pytest.approx(-0.5 * math.log(8 * math.pi) - 0.125)
    brier = brier_scores(torch.tensor([[0.7, 0.3]]), torch.tensor([1]))
    assert brier.item() == pytest.approx(0.49 + 0.49)


def test_regression_rows_are_checked_against_both_intervals() -> None:
    held = held_prediction("m", torch.zeros(2, 1), _regression(conformal=True), 0.0)
    score = score_feedback(held, torch.tensor([0, 1]), torch.tensor([[1.5], [12.0]]))
    predictive_hits = [
        float(held.intervals[PREDICTIVE][1][i, 0])
        <= y
        <= float(held.intervals[PREDICTIVE][2][i, 0])
        for i, y in enumerate((1.5, 12.0))
    ]
    assert predictive_hits == [True, False]
    assert score.checks[PREDICTIVE][:2] == (1, 2)
    assert score.checks[PREDICTIVE][2] == pytest.approx(1.8)
    assert score.checks[CONFORMAL][:2] == (1, 2)
    assert score.checks[CONFORMAL][2] == pytest.approx(1.6)
    expected = [
        -0.5 * math.log(2 * math.pi * 2.0) - 0.5**2 / (2 * 2.0),  # y = 1.5, mean 1, variance 2
        -0.5 * math.log(2 * math.pi * 1.0) - 2.0**2 / (2 * 1.0),  # y = 12, mean 10, variance 1
    ]
    assert score.log_likelihood == pytest.approx(expected)
    assert score.brier is None


def test_classification_rows_are_checked_against_the_sets() -> None:
    held = held_prediction("m", torch.zeros(2, 1), _classification(), 0.0)
    score = score_feedback(held, torch.tensor([0, 1]), torch.tensor([1, 1]))
    assert list(score.checks) == [PREDICTION_SET]
    assert score.checks[PREDICTION_SET][:2] == (1, 2)
    assert score.checks[PREDICTION_SET][2] == pytest.approx(1.8)
    assert score.log_likelihood == pytest.approx([math.log(0.3), math.log(0.8)])
    assert score.brier == pytest.approx([0.98, 0.08])


def test_take_by_request_id_once_then_gone() -> None:
    store = FeedbackStore(4, 60.0)
    store.remember("r1", "m", torch.tensor([[1.0], [2.0]]), _regression())
    with pytest.raises(InvalidInputError, match="had 2 rows"):
        store.take("m", "r1", 3)
    held, rows = store.take("m", "r1", 2)
    assert rows.tolist() == [0, 1] and held.model == "m"
    with pytest.raises(FeedbackGoneError, match="already received"):
        store.take("m", "r1", 2)
    with pytest.raises(FeedbackNotFoundError):
        store.take("m", "never", 2)
    with pytest.raises(FeedbackNotFoundError):
        store.take("other-model", "r1", 2)


def test_size_and_age_bound_the_store() -> None:
    clock = Clock()
    store = FeedbackStore(2, 10.0, clock=clock)
    for i in range(3):
        store.remember(f"r{i}", "m", torch.tensor([[float(i)]]), _regression())
    assert len(store) == 2
    with pytest.raises(FeedbackGoneError, match="pushed out"):
        store.take("m", "r0", 1)
    clock.now = 10.5
    with pytest.raises(FeedbackGoneError, match="older than 10 s"):
        store.take("m", "r1", 1)
    assert len(store) == 0
    off = FeedbackStore(0, 10.0)
    off.remember("r", "m", torch.zeros(1, 1), _regression())
    assert len(off) == 0


def test_rows_match_their_latest_prediction_once() -> None:
    store = FeedbackStore(4, 60.0)
    store.remember("a", "m", torch.tensor([[1.0], [2.0]]), _regression())
    store.remember("b", "m", torch.tensor([[2.0], [3.0]]), _regression(conformal=True))
    found = store.take_rows("m", torch.tensor([[2.0], [1.0]]))
    # row [2.0]: latest is request b (with a conformal band), row 0; row [1.0]: request a, row 0
    assert [row for _, row in found] == [0, 0]
    assert CONFORMAL in found[0][0].intervals and CONFORMAL not in found[1][0].intervals
    score = score_matches(found, torch.tensor([[1.0], [5.0]]))
    assert score.rows == 2 and score.checks[PREDICTIVE][1] == 2 and score.checks[CONFORMAL][1] == 1
    with pytest.raises(FeedbackNotFoundError, match=r"inputs\[0\]"):
        store.take_rows("m", torch.tensor([[2.0]]))  # already labelled
    with pytest.raises(FeedbackNotFoundError, match=r"inputs\[1\]"):
        store.take_rows("m", torch.tensor([[3.0], [9.0]]))
    _, rows = store.take("m", "b", 2)
    assert rows.tolist() == [1]  # row 0 was labelled through its values
