"""Abstention: flag predictions whose uncertainty score exceeds a per-model threshold.

The threshold is calibrated offline (``mcdrop calibrate``) so that a chosen share of
in-distribution rows stays at or below it; a row above it is likely out of distribution or too
uncertain to act on, and carries ``abstain: true``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from torch import Tensor

from app.engine.stats import ClassificationStats

AbstentionScore = Literal["mutual_information", "predictive_entropy", "variation_ratio"]
ABSTENTION_SCORES: tuple[AbstentionScore, ...] = get_args(AbstentionScore)

RankingScore = Literal["predictive_entropy", "mutual_information", "variation_ratio", "confidence"]
RANKING_SCORES: tuple[RankingScore, ...] = get_args(RankingScore)


@dataclass(frozen=True)
class AbstentionRule:
    """Abstain on a row when its `score` is strictly greater than `threshold`."""

    score: AbstentionScore
    threshold: float


def uncertainty_score(stats: ClassificationStats, score: RankingScore) -> Tensor:
    """(B,) per-row score, higher = less certain: a named statistic, or 1 - confidence."""
    if score == "confidence":
        return 1.0 - stats.confidence
    value: Tensor = getattr(stats, score)
    return value
