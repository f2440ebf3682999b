"""Evaluation reports: every metric of a labelled set, plus the data its pictures are drawn from.

The reports hold plain floats and lists (JSON-ready): the HTTP API returns them as they are and
the CLI draws its pictures from them, whether it evaluated locally or over HTTP.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from app.engine.abstention import RANKING_SCORES, RankingScore, uncertainty_score
from app.engine.evaluation.classification import (
    ECE_BINS,
    accuracy,
    area_under_risk_coverage,
    brier_score,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_bins,
    risk_coverage_curve,
    selective_risk,
)
from app.engine.evaluation.referral import ORDERINGS, Referral, auroc_referral, mean_referral
from app.engine.evaluation.regression import interval_coverage, mixture_crps
from app.engine.finite import OUTPUT_NOT_FINITE, refuse_non_finite_rows
from app.engine.stats import (
    classification_stats,
    mc_log_likelihood,
    predictive_interval,
    regression_stats,
)

DEFAULT_COVERAGES = (0.5, 0.8, 0.9, 0.95, 1.0)
CALIBRATION_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
CURVE_POINTS = 100
HISTOGRAM_BINS = 30
TARGET_TOO_FAR = (
    "is too far from the prediction: its squared error, log-likelihood or CRPS is not finite "
    "in float64"
)


@dataclass(frozen=True)
class ReliabilityBin:
    """One confidence bin of the reliability diagram; confidence/accuracy are None when empty."""

    lower: float
    upper: float
    count: int
    confidence: float | None
    accuracy: float | None


@dataclass(frozen=True)
class SelectivePoint:
    """Risk and accuracy when only the most certain `coverage` share of rows is answered."""

    coverage: float
    risk: float
    accuracy: float


@dataclass(frozen=True)
class RiskCoverage:
    """The risk-coverage curve at `CURVE_POINTS` evenly spaced coverages (1%, 2%, ..., 100%)."""

    coverage: list[float]
    risk: list[float]


@dataclass(frozen=True)
class Histogram:
    """Counts of one score in equal-width bins (`edges` has one more entry than each count
    list), split into named groups of rows (e.g. correct / wrong)."""

    edges: list[float]
    counts: dict[str, list[int]]


@dataclass(frozen=True)
class CoveragePoint:
    """Observed share of targets inside the central predictive interval at a nominal level."""

    level: float
    coverage: float


@dataclass(frozen=True)
class ClassificationReport:
    """Metrics of a labelled classification set (entropies in nats)."""

    accuracy: float
    nll: float
    brier: float
    ece: float
    ranking_score: str
    """Score that orders rows from most to least certain for the selective metrics."""
    selective: list[SelectivePoint]
    aurc: float
    """Area under the risk-coverage curve with `ranking_score`."""
    aurc_by_score: dict[str, float]
    reliability: list[ReliabilityBin]
    risk_coverage: RiskCoverage
    histograms: dict[str, Histogram] = field(default_factory=dict)
    """predictive_entropy and mutual_information, rows split into correct / wrong."""
    referral: list[Referral] = field(default_factory=list)
    """Accuracy (and, with two classes, AUROC of class 1) on the retained rows against the
    referral rate, the most uncertain rows referred first (Leibig et al. 2017)."""


@dataclass(frozen=True)
class RegressionReport:
    """Metrics of a labelled regression set (in target units)."""

    rmse: float
    log_likelihood: float
    """Mean MC test log-likelihood per row (Gal & Ghahramani 2016)."""
    pi_level: float
    pi_coverage: float
    """Share of targets inside the predictive interval at `pi_level`."""
    crps: float
    """Mean CRPS of the predictive Gaussian mixture."""
    interval_calibration: list[CoveragePoint]
    histograms: dict[str, Histogram] = field(default_factory=dict)
    """std (total predictive) and epistemic_std (spread of the passes), averaged over outputs,
    rows split into inside / outside the predictive interval."""


def histogram(
    values: Tensor,
    groups: Mapping[str, Tensor],
    bins: int = HISTOGRAM_BINS,
    from_zero: bool = True,
) -> Histogram:
    """Counts of `values` (B,) in equal-width bins, per group (name -> (B,) bool mask).

    The bins span [0, max] (`from_zero`, for entropies) or [min, max]; a range of width 0 is
    widened to one unit around the value. The top edge is inclusive.
    """
    data = values.double()
    low = 0.0 if from_zero else float(data.min())
    high = float(data.max())
    if high <= low:
        low, high = (0.0, 1.0) if from_zero else (low - 0.5, high + 0.5)
    index = ((data - low) / (high - low) * bins).floor().long().clamp(0, bins - 1)
    return Histogram(
        edges=torch.linspace(low, high, bins + 1, dtype=torch.float64).tolist(),
        counts={
            name: torch.bincount(index[mask], minlength=bins).tolist()
            for name, mask in groups.items()
        },
    )


def _reliability(confidence: Tensor, correct: Tensor) -> list[ReliabilityBin]:
    bins = reliability_bins(confidence, correct, ECE_BINS)
    return [
        ReliabilityBin(
            lower=float(bins.edges[i]),
            upper=float(bins.edges[i + 1]),
            count=int(bins.counts[i]),
            confidence=float(bins.confidence[i]) if bins.counts[i] > 0 else None,
            accuracy=float(bins.accuracy[i]) if bins.counts[i] > 0 else None,
        )
        for i in range(ECE_BINS)
    ]


def _risk_coverage(uncertainty: Tensor, correct: Tensor) -> RiskCoverage:
    _, risk = risk_coverage_curve(uncertainty, correct)
    rows = uncertainty.shape[0]
    coverages = [(i + 1) / CURVE_POINTS for i in range(CURVE_POINTS)]
    kept = [max(1, math.ceil(c * rows - 1e-9)) for c in coverages]
    return RiskCoverage(coverage=coverages, risk=[float(risk[k - 1]) for k in kept])


def classification_report(
    probs: Tensor,
    targets: Tensor,
    coverages: Sequence[float] = DEFAULT_COVERAGES,
    ranking_score: RankingScore = "predictive_entropy",
) -> ClassificationReport:
    """Every classification metric from MC probabilities (N, B, C) and targets (B,) long."""
    stats = classification_stats(probs.double(), 0.5)
    mean = stats.mean
    correct = mean.argmax(dim=-1) == targets
    scores = {name: uncertainty_score(stats, name) for name in RANKING_SCORES}
    ranking = scores[ranking_score]
    selective = []
    for coverage in coverages:
        risk = float(selective_risk(ranking, correct, coverage))
        selective.append(SelectivePoint(coverage=coverage, risk=risk, accuracy=1.0 - risk))
    outcome = {"correct": correct, "wrong": ~correct}
    return ClassificationReport(
        accuracy=float(accuracy(mean, targets)),
        nll=float(negative_log_likelihood(mean, targets)),
        brier=float(brier_score(mean, targets)),
        ece=float(expected_calibration_error(stats.confidence, correct, ECE_BINS)),
        ranking_score=ranking_score,
        selective=selective,
        aurc=float(area_under_risk_coverage(ranking, correct)),
        aurc_by_score={
            name: float(area_under_risk_coverage(score, correct)) for name, score in scores.items()
        },
        reliability=_reliability(stats.confidence, correct),
        risk_coverage=_risk_coverage(ranking, correct),
        histograms={
            "predictive_entropy": histogram(stats.predictive_entropy, outcome),
            "mutual_information": histogram(stats.mutual_information, outcome),
        },
        referral=_referral(scores, mean, targets, correct),
    )


def _referral(
    scores: Mapping[RankingScore, Tensor], mean: Tensor, targets: Tensor, correct: Tensor
) -> list[Referral]:
    orderings: dict[str, Tensor] = {name: scores[name] for name in ORDERINGS}
    referral = [mean_referral("accuracy", orderings, correct.double())]
    if mean.shape[-1] == 2:
        referral.append(auroc_referral(orderings, mean[:, 1], targets == 1))
    return referral


def _fields(stats: object) -> list[Tensor]:
    return [getattr(stats, f.name) for f in dataclasses.fields(stats)]  # type: ignore[arg-type]


def regression_report(
    preds: Tensor, noise_var: float | Tensor, targets: Tensor, level: float
) -> RegressionReport:
    """Every regression metric from MC means (N, B, D), their noise and targets (B, D).

    Per-pass variances are floored at their dtype's smallest normal number. Refuses
    (InvalidInputError) a row whose statistics are not finite (``inputs[i]``) or whose squared
    error, log-likelihood or CRPS is not finite in float64 (``targets[i]``).
    """
    preds = preds.double()
    noise = noise_var
    if isinstance(noise_var, Tensor):
        # A variance head's exp(log variance) can underflow to 0: the density would be
        # infinite, so it is floored at the dtype's smallest normal number (as feedback is).
        noise = noise_var.clamp_min(torch.finfo(noise_var.dtype).tiny).double()
    targets = targets.double()
    stats = regression_stats(preds, noise, level)
    refuse_non_finite_rows("inputs", _fields(stats), OUTPUT_NOT_FINITE)
    squared_error = (stats.mean - targets) ** 2
    log_likelihood = mc_log_likelihood(preds, noise, targets)
    crps = mixture_crps(preds, noise, targets)
    refuse_non_finite_rows("targets", [squared_error, log_likelihood, crps], TARGET_TOO_FAR)
    inside = ((targets >= stats.pi_lower) & (targets <= stats.pi_upper)).all(dim=1)
    groups = {"inside the interval": inside, "outside": ~inside}
    calibration = []
    for nominal in CALIBRATION_LEVELS:
        lower, upper = predictive_interval(preds, noise, nominal)
        calibration.append(
            CoveragePoint(level=nominal, coverage=float(interval_coverage(lower, upper, targets)))
        )
    return RegressionReport(
        rmse=float(squared_error.mean().sqrt()),
        log_likelihood=float(log_likelihood.mean()),
        pi_level=level,
        pi_coverage=float(interval_coverage(stats.pi_lower, stats.pi_upper, targets)),
        crps=float(crps.mean()),
        interval_calibration=calibration,
        histograms={
            "std": histogram(stats.std.mean(dim=1), groups, from_zero=False),
            "epistemic_std": histogram(
                stats.epistemic_variance.sqrt().mean(dim=1), groups, from_zero=False
            ),
        },
    )
