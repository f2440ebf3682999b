"""Referral (Leibig et al. 2017): send the most uncertain cases to a clinician, score the rest.

``uncertainty: (B,)`` is one score per case, higher = less certain (mutual information,
predictive entropy, 1 - confidence); at referral rate r the ``k = floor(r B)`` most uncertain
cases are referred and the metric is computed on the ``m = B - k`` retained ones. A good
ordering makes the retained metric rise with r; a random one leaves it flat.

Ties: a selector cannot tell cases of equal uncertainty apart, so a per-case mean (accuracy,
Dice) is the expected value over every order of the tied cases, as in
:func:`app.engine.evaluation.classification.risk_coverage_curve`; AUROC breaks ties by case
order. The thresholds (:func:`threshold_for_referral`, :func:`referral_for_target`) refer the
cases scoring strictly above them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from app.engine.abstention import RankingScore
from app.engine.evaluation.ood import auroc

REFERRAL_RATES = tuple(round(0.05 * step, 2) for step in range(19))
"""0, 5%, ..., 90%: the rates a referral curve is reported at."""


def _check(uncertainty: Tensor, values: Tensor) -> None:
    if uncertainty.dim() != 1 or values.shape != uncertainty.shape or uncertainty.numel() < 1:
        raise ValueError("uncertainty and the per-case values must be (B,) with B >= 1")


def retained_count(rate: float, cases: int) -> int:
    """m = B - floor(r B) retained cases at referral rate r in [0, 1) (at least 1)."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"a referral rate is in [0, 1), got {rate!r}")
    # The tolerance stops 0.3 * 10 = 3.0000000000000004 from referring a fourth case.
    return max(1, cases - math.floor(rate * cases + 1e-9))


def retained_means(uncertainty: Tensor, values: Tensor) -> Tensor:
    """Mean of ``values`` over the m most certain cases, for m = 1..B. (B,), (B,) -> (B,)
    float64; tied cases share their group's mean (the expectation over their orders)."""
    _check(uncertainty, values)
    order = torch.argsort(uncertainty, stable=True)
    _, group, sizes = torch.unique_consecutive(
        uncertainty[order], return_inverse=True, return_counts=True
    )
    sums = torch.zeros(sizes.shape[0], dtype=torch.float64)
    sums.index_add_(0, group, values[order].double())
    spread = (sums / sizes.double())[group]
    kept = torch.arange(1, uncertainty.shape[0] + 1, dtype=torch.float64)
    means: Tensor = spread.cumsum(0) / kept
    return means


def retained_mean_curve(
    uncertainty: Tensor, values: Tensor, rates: Sequence[float] = REFERRAL_RATES
) -> list[float]:
    """The retained cases' mean of a per-case metric (1/0 correctness: accuracy; a Dice
    score: mean Dice) at each referral rate."""
    means = retained_means(uncertainty, values)
    return [float(means[retained_count(rate, values.numel()) - 1]) for rate in rates]


def retained_auroc_curve(
    uncertainty: Tensor,
    positive_score: Tensor,
    positive: Tensor,
    rates: Sequence[float] = REFERRAL_RATES,
) -> list[float | None]:
    """AUROC of ``positive_score`` (B,) for the labels ``positive`` (B,) bool over the retained
    cases at each rate; None where the retained cases hold one class only."""
    _check(uncertainty, positive_score)
    order = torch.argsort(uncertainty, stable=True)
    curve: list[float | None] = []
    for rate in rates:
        kept = order[: retained_count(rate, uncertainty.numel())]
        labels, scores = positive[kept].bool(), positive_score[kept]
        if labels.all() or not labels.any():
            curve.append(None)
        else:
            curve.append(float(auroc(scores[~labels], scores[labels])))
    return curve


def threshold_for_referral(uncertainty: Tensor, rate: float) -> float:
    """The threshold t whose "refer when score > t" refers floor(r B) of the cases (fewer
    where cases tie at t): the m-th smallest score, m = :func:`retained_count`."""
    _check(uncertainty, uncertainty)
    ordered = torch.sort(uncertainty.double()).values
    return float(ordered[retained_count(rate, uncertainty.numel()) - 1])


def referral_for_target(uncertainty: Tensor, values: Tensor, target: float) -> float | None:
    """The largest threshold t (the fewest cases referred) such that the cases with score <= t
    (the retained) have a mean of ``values`` of at least ``target`` (e.g. a retained accuracy
    of 0.95); None when no non-empty retained set reaches it. Only cuts between distinct
    scores are considered, so the retained set is exactly the cases at or below t."""
    means = retained_means(uncertainty, values)
    ordered = torch.sort(uncertainty.double()).values
    cuts = torch.ones_like(ordered, dtype=torch.bool)
    cuts[:-1] = ordered[1:] > ordered[:-1]
    reaching = torch.nonzero(cuts & (means >= target - 1e-12)).flatten()
    if reaching.numel() == 0:
        return None
    return float(ordered[int(reaching.max())])


ORDERINGS: tuple[RankingScore, ...] = ("mutual_information", "predictive_entropy", "confidence")
"""Uncertainty orderings a referral report compares (``confidence``: 1 - confidence)."""


@dataclass(frozen=True)
class Referral:
    """One metric on the retained cases against the referral rate, per ordering."""

    metric: str
    """``accuracy``, ``auroc`` or ``dice`` (mean per-image Dice)."""
    rates: list[float]
    curves: dict[str, list[float | None]]
    """Ordering -> the metric at each rate (None: undefined, e.g. AUROC of one class)."""


def mean_referral(
    metric: str,
    orderings: Mapping[str, Tensor],
    values: Tensor,
    rates: Sequence[float] = REFERRAL_RATES,
) -> Referral:
    """A per-case mean metric (correctness, Dice) against the referral rate, per ordering."""
    curves: dict[str, list[float | None]] = {
        name: list(retained_mean_curve(score, values, rates)) for name, score in orderings.items()
    }
    return Referral(metric=metric, rates=list(rates), curves=curves)


def auroc_referral(
    orderings: Mapping[str, Tensor],
    positive_score: Tensor,
    positive: Tensor,
    rates: Sequence[float] = REFERRAL_RATES,
) -> Referral:
    """AUROC of a binary classifier on the retained cases against the referral rate."""
    curves = {
        name: retained_auroc_curve(score, positive_score, positive, rates)
        for name, score in orderings.items()
    }
    return Referral(metric="auroc", rates=list(rates), curves=curves)
