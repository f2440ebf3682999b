"""Abstention flags from a calibrated threshold on an uncertainty score."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from app.engine.abstention import AbstentionRule, uncertainty_score
from app.engine.predictor import PredictionRequest
from app.engine.stats import classification_stats, regression_stats
from app.registry.loading import load_model_folder
from app.tasks.classification import Classification
from app.tasks.regression import Regression

# Row 0: the passes agree (MI 0); row 1: they fully disagree (MI = ln 2, variation ratio 0.5).
PROBS = torch.tensor([[[0.5, 0.5], [1.0, 0.0]], [[0.5, 0.5], [0.0, 1.0]]], dtype=torch.float64)


def _flags(rule: AbstentionRule) -> list[bool]:
    flags = Classification().abstain(classification_stats(PROBS, 0.9), rule)
    assert flags is not None
    return [bool(flag) for flag in flags.tolist()]


def test_flags_rows_strictly_above_the_threshold() -> None:
    assert _flags(AbstentionRule("mutual_information", threshold=0.1)) == [False, True]
    assert _flags(AbstentionRule("variation_ratio", threshold=0.5)) == [False, False]
    assert _flags(AbstentionRule("predictive_entropy", threshold=0.0)) == [True, True]


def test_no_rule_or_regression_gives_no_flags() -> None:
    assert Classification().abstain(classification_stats(PROBS, 0.9), None) is None
    regression = regression_stats(torch.zeros(3, 2, 1), 1.0, 0.9)
    assert Regression().abstain(regression, AbstentionRule("predictive_entropy", 0.0)) is None


def test_confidence_score_is_one_minus_confidence() -> None:
    stats = classification_stats(PROBS, 0.9)
    assert uncertainty_score(stats, "confidence").tolist() == pytest.approx([0.5, 0.5])


def test_predictions_carry_the_flags_of_the_card_rule(model_factory: Callable[..., Path]) -> None:
    rule = {"score": "mutual_information", "threshold": 0.0, "in_distribution_share": 0.95}
    model = load_model_folder(model_factory(card={"abstention": rule}))
    # x = 0 gives hidden units of 0, so every pass outputs the bias: MI is exactly 0.
    inputs = torch.tensor([[0.0, 0.0], [3.0, -3.0]])
    prediction = model.predictor.predict(PredictionRequest(inputs, 50, 0.9, seed=0))
    assert prediction.abstain is not None
    assert prediction.abstain.tolist() == [False, True]
