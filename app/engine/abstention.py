"""Abstention: flag predictions whose uncertainty score exceeds a per-model threshold.

The threshold is calibrated offline (``mcdrop calibrate``) so that a chosen share of
in-distribution rows stays at or below it; a row above it is likely out of distribution or too
uncertain to act on, and carries ``abstain: true``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from torch import Tensor

from app.engine.stats import ClassificationStats

AbstentionScore = Literal[
    "mutual_information",
    "predictive_entropy",
    "variation_ratio",
    "mean_mutual_information",
    "foreground_mutual_information",
]
ABSTENTION_SCORES: tuple[AbstentionScore, ...] = get_args(AbstentionScore)
TASK_ABSTENTION_SCORES: dict[str, tuple[AbstentionScore, ...]] = {
    "classification": ("mutual_information", "predictive_entropy", "variation_ratio"),
    "segmentation": ("mean_mutual_information", "foreground_mutual_information"),
}
"""The scores each task abstains on (its first the default): a classification row's own
statistics; a segmentation image's mutual information averaged over every pixel, or over its
predicted foreground (0 without one: an image with no predicted lesion never abstains on it)."""

RankingScore = Literal["predictive_entropy", "mutual_information", "variation_ratio", "confidence"]
RANKING_SCORES: tuple[RankingScore, ...] = get_args(RankingScore)


@dataclass(frozen=True)
class AbstentionRule:
    """Abstain on a row when its `score` (a (B,) statistic of the task's, see
    ``TASK_ABSTENTION_SCORES``) is strictly greater than `threshold`."""

    score: AbstentionScore
    threshold: float


def uncertainty_score(stats: ClassificationStats, score: RankingScore | AbstentionScore) -> Tensor:
    """(B,) per-row score, higher = less certain: a named statistic, or 1 - confidence."""
    if score == "confidence":
        return 1.0 - stats.confidence
    value: Tensor = getattr(stats, score)
    return value


def exceeds(stats: Any, rule: AbstentionRule) -> Tensor:
    """(B,) bool: the row's ``rule.score`` statistic (a (B,) field of ``stats``) is strictly
    above ``rule.threshold``."""
    score: Tensor = getattr(stats, rule.score)
    return score > rule.threshold
