"""The feedback store and the scores of labels, against hand-computed answers."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
import torch

from app.dataplane.feedback import PREDICTION_SET, score_feedback, score_matches
from app.dataplane.feedback_store import (
    CONFORMAL,
    PREDICTION_OVERHEAD_BYTES,
    PREDICTIVE,
    ROW_OVERHEAD_BYTES,
    TENSOR_OVERHEAD_BYTES,
    FeedbackStore,
    held_prediction,
)
from app.engine.conformal import ConformalOutput
from app.engine.predictor import Prediction
from app.engine.stats import classification_stats, regression_stats
from app.errors import FeedbackGoneError, FeedbackNotFoundError, InvalidInputError


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


def _store(max_predictions: int = 4, max_bytes: int = 1 << 20, **options: Any) -> FeedbackStore:
    ids = iter(f"p{i}" for i in range(100))
    return FeedbackStore(max_predictions, 60.0, max_bytes, new_id=lambda: next(ids), **options)


def test_find_by_prediction_id_then_settle_once() -> None:
    store = _store()
    pid = store.remember("alice", "m", torch.tensor([[1.0], [2.0]]), _regression())
    assert pid == "p0"
    with pytest.raises(InvalidInputError, match="had 2 rows"):
        store.find("alice", "m", "p0", 3)
    held, rows = store.find("alice", "m", "p0", 2)
    assert rows.tolist() == [0, 1] and held.model == "m" and held.owner == "alice"
    assert store.find("alice", "m", "p0", 2)[0] is held  # finding alone consumes nothing
    store.settle(held)
    with pytest.raises(FeedbackGoneError, match="already received"):
        store.find("alice", "m", "p0", 2)
    with pytest.raises(FeedbackGoneError, match="already received"):
        store.settle(held)  # a second feedback that found it before the first settled
    with pytest.raises(FeedbackNotFoundError):
        store.find("alice", "m", "never", 2)
    with pytest.raises(FeedbackNotFoundError):
        store.find("alice", "other-model", "p0", 2)


def test_another_owner_sees_nothing() -> None:
    store = _store()
    store.remember("alice", "m", torch.tensor([[1.0]]), _regression())
    with pytest.raises(FeedbackNotFoundError, match="has id 'p0'") as caught:
        store.find("bob", "m", "p0", 1)
    with pytest.raises(FeedbackNotFoundError) as never:
        store.find("bob", "m", "p9", 1)
    assert str(caught.value).replace("p0", "p9") == str(never.value)
    with pytest.raises(FeedbackNotFoundError, match=r"inputs\[0\]"):
        store.find_rows("bob", "m", torch.tensor([[1.0]]))
    with pytest.raises(FeedbackNotFoundError):
        store.find("bob", "m", "p0", 1)  # keys off (None) is not a wildcard either
    store.settle(store.find("alice", "m", "p0", 1)[0])
    with pytest.raises(FeedbackNotFoundError):  # not 410: bob may not learn it existed
        store.find("bob", "m", "p0", 1)


def test_size_and_age_bound_the_store() -> None:
    clock = Clock()
    store = _store(2, clock=clock)
    for i in range(3):
        store.remember(None, "m", torch.tensor([[float(i)]]), _regression())
    assert len(store) == 2
    with pytest.raises(FeedbackGoneError, match="pushed out"):
        store.find(None, "m", "p0", 1)
    clock.now = 10.0
    store.remember(None, "m", torch.tensor([[9.0]]), _regression())  # p1 pushed out
    clock.now = 60.5
    with pytest.raises(FeedbackGoneError, match="older than 60 s"):
        store.find(None, "m", "p2", 1)
    assert len(store) == 1 and store.find(None, "m", "p3", 1)[0].created == 10.0
    off = FeedbackStore(0, 10.0, 1 << 20)
    assert off.remember(None, "m", torch.zeros(1, 1), _regression()) is None
    assert len(off) == 0


def test_bytes_of_a_held_prediction() -> None:
    held = held_prediction("m", torch.zeros(2, 1), _regression(conformal=True), 0.0)
    # mean, variance, used, predictive and conformal bounds: 6 float32 (2, 1) tensors and one
    # (2,) bool
    data = 6 * 2 * 4 + 2
    expected = data + 7 * TENSOR_OVERHEAD_BYTES + 2 * ROW_OVERHEAD_BYTES
    assert held.nbytes == expected + PREDICTION_OVERHEAD_BYTES
    big = torch.arange(1000.0).reshape(500, 2, 1)
    stats = regression_stats(big[:2], 1.0, 0.9)
    view = dataclasses.replace(stats, mean=big[0])  # a view of a 4,000-byte storage
    prediction = Prediction(2, 0, 0.9, view, None, 0.0)
    copied = held_prediction("m", torch.zeros(2, 1), prediction, 0.0)
    assert copied.mean.untyped_storage().nbytes() == 2 * 4  # a copy, not the whole storage


def test_bytes_bound_the_store() -> None:
    one = held_prediction("m", torch.zeros(2, 1), _regression(), 0.0).nbytes
    store = _store(100, max_bytes=2 * one + one // 2)
    for i in range(3):
        store.remember(None, "m", torch.tensor([[float(i)], [0.5]]), _regression())
    assert len(store) == 2 and store.nbytes == 2 * one
    with pytest.raises(FeedbackGoneError, match="pushed out"):
        store.find(None, "m", "p0", 2)
    store.settle(store.find(None, "m", "p1", 2)[0])
    assert store.nbytes == one
    tiny = _store(100, max_bytes=one - 1)
    assert tiny.remember(None, "m", torch.zeros(2, 1), _regression()) is None
    assert len(tiny) == 0 and tiny.nbytes == 0


def test_rows_match_their_owners_latest_prediction_once() -> None:
    store = _store()
    store.remember(None, "m", torch.tensor([[1.0], [2.0]]), _regression())
    store.remember(None, "m", torch.tensor([[2.0], [3.0]]), _regression(conformal=True))
    store.remember("bob", "m", torch.tensor([[1.0], [2.0]]), _regression())
    found = store.find_rows(None, "m", torch.tensor([[2.0], [1.0]]))
    # row [2.0]: latest is prediction p1 (with a conformal band), row 0; row [1.0]: p0, row 0
    assert [(held.prediction_id, row) for held, row in found] == [("p1", 0), ("p0", 0)]
    matches = [(held, row, entry) for entry, (held, row) in enumerate(found)]
    score = score_matches(matches, torch.tensor([[1.0], [5.0]]))
    assert score.rows == 2 and score.checks[PREDICTIVE][1] == 2 and score.checks[CONFORMAL][1] == 1
    store.settle_rows(found)
    with pytest.raises(FeedbackNotFoundError, match=r"inputs\[0\]"):
        store.find_rows(None, "m", torch.tensor([[2.0]]))  # already labelled
    with pytest.raises(FeedbackNotFoundError, match=r"inputs\[0\]"):
        store.settle_rows(found)  # a concurrent feedback that found the same rows
    with pytest.raises(FeedbackNotFoundError, match=r"inputs\[1\]"):
        store.find_rows(None, "m", torch.tensor([[3.0], [9.0]]))
    _, rows = store.find(None, "m", "p1", 2)
    assert rows.tolist() == [1]  # row 0 was labelled through its values
    assert [row for _, row in store.find_rows("bob", "m", torch.tensor([[2.0]]))] == [1]


def test_a_zero_variance_is_floored_at_the_smallest_normal_float() -> None:
    stats = regression_stats(torch.tensor([[[1.0]], [[1.0]]]), 0.0, 0.9)  # variance exactly 0
    held = held_prediction("m", torch.zeros(1, 1), Prediction(2, 0, 0.9, stats, None, 0.0), 0.0)
    score = score_feedback(held, torch.tensor([0]), torch.tensor([[1e30]]))
    tiny = torch.finfo(torch.float32).tiny
    expected = -0.5 * (math.log(2 * math.pi * tiny) + (1e30 - 1.0) ** 2 / tiny)
    assert math.isfinite(expected) and score.log_likelihood == pytest.approx([expected])


def test_targets_whose_log_likelihood_overflows_are_refused() -> None:
    preds = torch.tensor([[[0.0], [0.0], [0.0]]], dtype=torch.float64)  # N = 1, B = 3
    stats = regression_stats(preds, 1.0, 0.9)  # float64 variance 1 (the floor is 2.2e-308)
    held = held_prediction("m", torch.zeros(3, 1), Prediction(1, 0, 0.9, stats, None, 0.0), 0.0)
    targets = torch.tensor([[1.0], [1e200], [2.0]], dtype=torch.float64)
    matches = [(held, row, row) for row in range(3)]
    with pytest.raises(InvalidInputError, match=r"targets\[1\].*not finite"):
        score_matches(matches, targets)
    # 1.3e154: each row's log-likelihood is -0.5 (1.69e308 + log 2 pi), finite; three overflow
    big = torch.full((3, 1), 1.3e154, dtype=torch.float64)
    single = score_matches(matches[:1], big)
    assert single.log_likelihood == [-0.5 * (1.3e154**2 + math.log(2 * math.pi))]
    with pytest.raises(InvalidInputError, match="add up to more than float64"):
        score_matches(matches, big)
