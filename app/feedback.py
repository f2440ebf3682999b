"""Live coverage from labelled feedback: recent predictions held in a bounded store, the labels
that arrive later matched against them, and the scores those labels give.

Transport-neutral (no FastAPI): the HTTP route calls `FeedbackStore.take` or `take_rows`, then
`score_feedback` and `record_feedback`. The store is per process and bounded by count and age;
a prediction pushed out, expired or already labelled answers `FeedbackGoneError` (410), one it
never held `FeedbackNotFoundError` (404).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from app.engine.predictor import Prediction
from app.engine.stats import ClassificationStats
from app.errors import FeedbackGoneError, FeedbackNotFoundError, InvalidInputError
from app.metrics import Metrics

PREDICTIVE, CONFORMAL, PREDICTION_SET = "predictive", "conformal", "prediction_set"


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


def row_keys(inputs: Tensor) -> list[bytes]:
    """A digest of each input row's exact values (B, ...) -> B keys, to match rows later."""
    flat = inputs.detach().cpu().contiguous().reshape(inputs.shape[0], -1)
    data = flat.numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in data]


@dataclass
class HeldPrediction:
    """What scoring feedback needs of one served prediction (B rows)."""

    model: str
    created: float
    mean: Tensor
    """(B, D) regression means or (B, C) mean probabilities."""
    variance: Tensor | None
    """(B, D) total predictive variance (regression)."""
    intervals: dict[str, tuple[float, Tensor, Tensor]]
    """interval name -> (nominal level, lower (B, D), upper (B, D))."""
    sets: tuple[float, Tensor] | None
    """(level, (B, C) bool) conformal prediction sets (classification)."""
    keys: list[bytes]
    used: Tensor = field(init=False)
    """(B,) bool: rows already labelled."""

    def __post_init__(self) -> None:
        self.used = torch.zeros(len(self.keys), dtype=torch.bool)


def held_prediction(
    model: str, inputs: Tensor, prediction: Prediction, now: float
) -> HeldPrediction:
    """The parts of `prediction` (for `inputs`) that feedback is scored against."""
    stats, conformal = prediction.stats, prediction.conformal
    keys = row_keys(inputs)
    if isinstance(stats, ClassificationStats):
        sets = None
        if conformal is not None and conformal.sets is not None:
            sets = (conformal.level, conformal.sets)
        return HeldPrediction(model, now, stats.mean, None, {}, sets, keys)
    intervals = {PREDICTIVE: (prediction.ci_level, stats.pi_lower, stats.pi_upper)}
    if conformal is not None and conformal.lower is not None and conformal.upper is not None:
        intervals[CONFORMAL] = (conformal.level, conformal.lower, conformal.upper)
    return HeldPrediction(model, now, stats.mean, stats.variance, intervals, None, keys)


@dataclass(frozen=True)
class FeedbackScore:
    """Scores of the labelled rows of one feedback."""

    rows: int
    checks: dict[str, tuple[int, int, float]]
    """interval -> (covered rows, checked rows, sum of nominal levels)."""
    log_likelihood: list[float]
    brier: list[float] | None = None


def score_feedback(held: HeldPrediction, rows: Tensor, targets: Tensor) -> FeedbackScore:
    """Score targets for rows (K,) long of `held`: (K,) class indices or (K, D) values."""
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
    variance = held.variance[rows].double().clamp_min(1e-300)
    return FeedbackScore(
        len(rows), checks, gaussian_log_likelihood(mean, variance, targets).tolist()
    )


def score_matches(matches: Sequence[tuple[HeldPrediction, int]], targets: Tensor) -> FeedbackScore:
    """Score targets (K, ...) of K matched rows, (held prediction, row) each, in that order."""
    groups: dict[int, tuple[HeldPrediction, list[int], list[int]]] = {}
    for index, (held, row) in enumerate(matches):
        groups.setdefault(id(held), (held, [], []))
        groups[id(held)][1].append(row)
        groups[id(held)][2].append(index)
    scores = [
        score_feedback(held, torch.tensor(rows), targets[torch.tensor(order)])
        for held, rows, order in groups.values()
    ]
    return combine(scores)


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


class FeedbackStore:
    """The last `max_predictions` predictions younger than `max_age_s`, by (model, request id),
    and an index of their rows by exact input values."""

    def __init__(
        self, max_predictions: int, max_age_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_predictions = max_predictions
        self.max_age_s = max_age_s
        self.clock = clock
        self._held: OrderedDict[tuple[str, str], HeldPrediction] = OrderedDict()
        self._rows: dict[tuple[str, bytes], tuple[str, int]] = {}
        self._gone: OrderedDict[tuple[str, str], str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def remember(self, request_id: str, model: str, inputs: Tensor, prediction: Prediction) -> None:
        """Hold one served prediction (nothing when the store is off)."""
        if self.max_predictions == 0:
            return
        key = (model, request_id)
        self._held.pop(key, None)
        held = held_prediction(model, inputs, prediction, self.clock())
        self._held[key] = held
        for row, digest in enumerate(held.keys):
            self._rows[(model, digest)] = (request_id, row)
        self._expire()
        while len(self._held) > self.max_predictions:
            self._drop(next(iter(self._held)), "pushed out by newer predictions")

    def take(self, model: str, request_id: str, rows: int) -> tuple[HeldPrediction, Tensor]:
        """The held prediction and its rows not yet labelled; it can take no more feedback."""
        self._expire()
        key = (model, request_id)
        held = self._held.get(key)
        if held is None:
            raise self._missing(key)
        if rows != len(held.keys):
            raise InvalidInputError(
                "targets", f"has {rows} entries, request '{request_id}' had {len(held.keys)} rows"
            )
        self._drop(key, "already received its feedback")
        return held, (~held.used).nonzero().flatten()

    def take_rows(self, model: str, inputs: Tensor) -> list[tuple[HeldPrediction, int]]:
        """For each input row, the latest held prediction of exactly that row (marked used)."""
        self._expire()
        found = []
        for index, digest in enumerate(row_keys(inputs)):
            place = self._rows.get((model, digest))
            held = self._held.get((model, place[0])) if place is not None else None
            if place is None or held is None or bool(held.used[place[1]]):
                raise FeedbackNotFoundError(
                    f"inputs[{index}]: no recent prediction of '{model}' for this row"
                )
            found.append((held, place[1]))
        for held, row in found:
            held.used[row] = True
            self._rows.pop((model, held.keys[row]), None)
        return found

    def _missing(self, key: tuple[str, str]) -> Exception:
        reason = self._gone.get(key)
        if reason is not None:
            return FeedbackGoneError(f"request '{key[1]}' of model '{key[0]}' {reason}")
        return FeedbackNotFoundError(
            f"no recent prediction of model '{key[0]}' has request id '{key[1]}'"
        )

    def _expire(self) -> None:
        oldest = self.clock() - self.max_age_s
        while self._held:
            key, held = next(iter(self._held.items()))
            if held.created >= oldest:
                break
            self._drop(key, f"is older than {self.max_age_s:g} s (feedback_max_age_s)")

    def _drop(self, key: tuple[str, str], reason: str) -> None:
        held = self._held.pop(key)
        for row, digest in enumerate(held.keys):
            if self._rows.get((key[0], digest)) == (key[1], row):
                del self._rows[(key[0], digest)]
        self._gone[key] = reason
        self._gone.move_to_end(key)
        while len(self._gone) > max(1, self.max_predictions):
            self._gone.popitem(last=False)
