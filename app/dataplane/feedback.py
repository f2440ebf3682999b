"""Live coverage from labelled feedback: the labels that arrive later matched against held
predictions (`app.dataplane.feedback_store`), and the scores they give (interval and set checks,
log-likelihoods, Brier), which are the evaluation metrics' per-row (``reduction="none"``) forms.

A target whose score is not finite in float64 is refused (422 naming ``targets[i]``) before
anything is counted, so a Prometheus sum never becomes infinite or NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from app.dataplane.feedback_store import HeldPrediction
from app.engine.evaluation.classification import (
    brier_score,
    negative_log_likelihood,
    set_coverage,
)
from app.engine.evaluation.regression import gaussian_log_likelihood, interval_coverage
from app.errors import InvalidInputError

PREDICTION_SET = "prediction_set"
"""The classification check: the label inside the served conformal prediction set."""

Match = tuple[HeldPrediction, int, int]
"""(held prediction, its row, the feedback entry labelling it)."""


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
            hits = set_coverage(sets[rows], targets, reduction="none")
            checks[PREDICTION_SET] = (int(hits.sum()), len(rows), level * len(rows))
        log_likelihood = -negative_log_likelihood(mean, targets, reduction="none")
        brier = brier_score(mean, targets, reduction="none")
        return FeedbackScore(len(rows), checks, log_likelihood.tolist(), brier.tolist())
    for name, (level, lower, upper) in held.intervals.items():
        inside = interval_coverage(
            lower[rows].double(), upper[rows].double(), targets.double(), reduction="none"
        )
        hits = inside.all(dim=1)
        checks[name] = (int(hits.sum()), len(rows), level * len(rows))
    floor = torch.finfo(held.variance.dtype).tiny
    variance = held.variance[rows].double().clamp_min(floor)
    log_likelihood = gaussian_log_likelihood(mean, variance, targets, reduction="none")
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
