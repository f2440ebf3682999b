"""The scores labels give held predictions: interval and set checks, log-likelihoods, Brier.

A target whose score is not finite in float64 is refused (422 naming ``targets[i]``) before
anything is counted, so a Prometheus sum never becomes infinite or NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from app.errors import InvalidInputError
from app.feedback.store import HeldPrediction
from app.metrics import Metrics

PREDICTION_SET = "prediction_set"
"""The classification check: the label inside the served conformal prediction set."""

Match = tuple[HeldPrediction, int, int]
"""(held prediction, its row, the feedback entry labelling it)."""


def gaussian_log_likelihood(mean: Tensor, variance: Tensor, target: Tensor) -> Tensor:
    """Σ_d log N(y_d | m_d, v_d) per row. (B, D) x 3 -> (B,); every v must be > 0."""
    mean, variance, target = mean.double(), variance.double(), target.double()
    density = -0.5 * (torch.log(2.0 * math.pi * variance) + (target - mean) ** 2 / variance)
    return density.sum(dim=1)


def brier_scores(probs: Tensor, labels: Tensor) -> Tensor:
    """Σ_c (p_c - 1[c = y])² per row. probs (B, C), labels (B,) long -> (B,)."""
    onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).double()
    return ((probs.double() - onehot) ** 2).sum(dim=1)


def interval_hits(lower: Tensor, upper: Tensor, target: Tensor) -> Tensor:
    """(B,) bool: every output of the row inside its closed interval. (B, D) x 3."""
    target = target.double()
    return ((target >= lower.double()) & (target <= upper.double())).all(dim=1)


def set_hits(sets: Tensor, labels: Tensor) -> Tensor:
    """(B,) bool: the label is in the row's prediction set. sets (B, C) bool, labels (B,)."""
    return sets.gather(1, labels.unsqueeze(1)).squeeze(1)


@dataclass(frozen=True)
class FeedbackScore:
    """Scores of the labelled rows of one feedback."""

    rows: int
    checks: dict[str, tuple[int, int, float]]
    """interval -> (covered rows, checked rows, sum of nominal levels)."""
    log_likelihood: list[float]
    brier: list[float] | None = None


def score_feedback(
    held: HeldPrediction, rows: Tensor, targets: Tensor, entries: Sequence[int] | None = None
) -> FeedbackScore:
    """Score targets for rows (K,) long of `held`: (K,) class indices or (K, D) values.

    ``entries`` are the feedback's positions of the K targets (for errors; 0..K-1 if None).
    The regression variance is floored at the smallest normal number of its dtype (a served
    variance of 0 would give log-likelihood -inf); a row whose log-likelihood is still not
    finite in float64 is refused (InvalidInputError naming ``targets[entry]``).
    """
    checks: dict[str, tuple[int, int, float]] = {}
    mean = held.mean[rows]
    if held.variance is None:
        if held.sets is not None:
            level, sets = held.sets
            hits = set_hits(sets[rows], targets)
            checks[PREDICTION_SET] = (int(hits.sum()), len(rows), level * len(rows))
        chosen = mean.double().gather(1, targets.unsqueeze(1)).squeeze(1)
        log_likelihood = torch.log(chosen.clamp_min(1e-300))
        return FeedbackScore(
            len(rows), checks, log_likelihood.tolist(), brier_scores(mean, targets).tolist()
        )
    for name, (level, lower, upper) in held.intervals.items():
        hits = interval_hits(lower[rows], upper[rows], targets)
        checks[name] = (int(hits.sum()), len(rows), level * len(rows))
    floor = torch.finfo(held.variance.dtype).tiny
    variance = held.variance[rows].double().clamp_min(floor)
    log_likelihood = gaussian_log_likelihood(mean, variance, targets)
    _refuse_non_finite(log_likelihood, entries)
    return FeedbackScore(len(rows), checks, log_likelihood.tolist())


def _refuse_non_finite(values: Tensor, entries: Sequence[int] | None) -> None:
    bad = (~torch.isfinite(values)).nonzero().flatten()
    if bad.numel():
        row = int(bad[0])
        entry = entries[row] if entries is not None else row
        raise InvalidInputError(
            f"targets[{entry}]",
            "is too far from the prediction: its log-likelihood is not finite in float64",
        )


def score_matches(matches: Sequence[Match], targets: Tensor) -> FeedbackScore:
    """Score the targets (E, ...) of a feedback's entries against the K matched rows, each
    (held prediction, row, entry); refused if a row's or the total log-likelihood is not
    finite (a sum that overflows float64 could never leave a metric)."""
    groups: dict[int, tuple[HeldPrediction, list[int], list[int]]] = {}
    for held, row, entry in matches:
        groups.setdefault(id(held), (held, [], []))
        groups[id(held)][1].append(row)
        groups[id(held)][2].append(entry)
    scores = [
        score_feedback(held, torch.tensor(rows), targets[torch.tensor(order)], order)
        for held, rows, order in groups.values()
    ]
    score = combine(scores)
    if not math.isfinite(sum(score.log_likelihood)):
        raise InvalidInputError(
            "targets", "the rows' log-likelihoods add up to more than float64 holds"
        )
    return score


def combine(scores: Sequence[FeedbackScore]) -> FeedbackScore:
    """One score for several (their rows, checks and per-row values together)."""
    checks: dict[str, tuple[int, int, float]] = {}
    for score in scores:
        for name, (covered, checked, nominal) in score.checks.items():
            old = checks.get(name, (0, 0, 0.0))
            checks[name] = (old[0] + covered, old[1] + checked, old[2] + nominal)
    briers = [value for score in scores for value in score.brier or []]
    return FeedbackScore(
        rows=sum(score.rows for score in scores),
        checks=checks,
        log_likelihood=[value for score in scores for value in score.log_likelihood],
        brier=briers if any(score.brier is not None for score in scores) else None,
    )


def record_feedback(metrics: Metrics, model: str, score: FeedbackScore) -> None:
    """Count the rows, the interval checks and the per-row scores under ``model``."""
    metrics.feedback.labels(model).inc(score.rows)
    for name, (covered, checked, nominal) in score.checks.items():
        metrics.interval_covered.labels(model, name).inc(covered)
        metrics.interval_checked.labels(model, name).inc(checked)
        metrics.interval_nominal.labels(model, name).inc(nominal)
    metrics.feedback_log_likelihood.labels(model).inc(sum(score.log_likelihood))
    for value in score.brier or []:
        metrics.feedback_brier.labels(model).observe(value)
