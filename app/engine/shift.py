"""Distribution shift: is this input like the training data? A distance-aware score beside MI.

MC dropout's mutual information need not grow with the distance from the training data (a ReLU
network far from the data is piecewise linear and its passes agree), so mcdrop also models the
deterministic features z (the activation entering the first dropout, computed once per row by
the prefix; the model input where there is no prefix) with class-conditional Gaussians sharing
one covariance (Lee et al. 2018, "A simple unified framework for detecting out-of-distribution
samples and adversarial attacks"):

- means μ_c (K, F) of the training rows of each class c seen, shared covariance
  Σ = 1/n Σ_i (z_i - μ_{y_i})(z_i - μ_{y_i})ᵀ plus a ridge λ·(tr Σ / F)·I, precision P = Σ⁻¹;
- the shift score is the Mahalanobis distance to the nearest class,
  d(z) = min_c sqrt((z - μ_c)ᵀ P (z - μ_c)) (in units of training standard deviations);
- each input value's training range [low_d, high_d] with its std s_d: the range excess of a row
  is max_d max(low_d - x_d, x_d - high_d, 0) / s_d.

A row is flagged (``shift_flag``) when d(z) > threshold or its range excess > margin; the
threshold is set on held-out in-distribution rows for a chosen false-alarm rate
(:func:`threshold_for_false_alarms`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

if TYPE_CHECKING:
    from app.engine.sampling import Sampler

FeatureSource = Literal["prefix", "input"]

DEFAULT_RIDGE = 1e-3
"""Ridge λ added to the shared covariance, relative to its mean variance: features that never
vary in training (dead ReLU units) would make Σ singular."""


def fit_class_gaussians(
    features: Tensor, labels: Tensor, ridge: float = DEFAULT_RIDGE
) -> tuple[Tensor, Tensor]:
    """(means (K, F), precision (F, F)) float64 of the classes present in ``labels``.

    features (n, F), labels (n,) long. Σ = 1/n Σ_i (z_i - μ_{y_i})(z_i - μ_{y_i})ᵀ
    + λ·(tr Σ / F)·I (λ = ``ridge``; an identity ridge when Σ is zero), P = Σ⁻¹.
    """
    z = features.double()
    if z.dim() != 2 or labels.shape != (z.shape[0],) or z.shape[0] < 2:
        raise ValueError("features must be (n, F) with n >= 2 and labels (n,)")
    classes = torch.unique(labels)
    means = torch.stack([z[labels == c].mean(dim=0) for c in classes])
    centred = z - means[torch.searchsorted(classes, labels)]
    covariance = centred.T @ centred / z.shape[0]
    scale = float(covariance.diagonal().mean())
    identity = torch.eye(z.shape[1], dtype=torch.float64)
    covariance = covariance + ridge * (scale if scale > 0 else 1.0) * identity
    return means, torch.linalg.inv(covariance)


def mahalanobis_distance(features: Tensor, means: Tensor, precision: Tensor) -> Tensor:
    """min_c sqrt((z - μ_c)ᵀ P (z - μ_c)): features (B, F), means (K, F), precision (F, F)
    -> (B,) float64."""
    diff = features.double().unsqueeze(1) - means.unsqueeze(0)  # (B, K, F)
    squared = ((diff @ precision) * diff).sum(dim=-1)  # (B, K)
    return squared.clamp_min(0.0).amin(dim=1).sqrt()


def fit_ranges(inputs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(low, high, scale), each (D,) float64, of training inputs (n, D): the minimum, the maximum
    and the standard deviation of each value (a constant value gets scale 1)."""
    x = inputs.double().flatten(1)
    std = x.std(dim=0, unbiased=False) if x.shape[0] > 1 else torch.zeros(x.shape[1])
    return x.amin(dim=0), x.amax(dim=0), torch.where(std > 0, std, torch.ones_like(std))


def range_excess(inputs: Tensor, low: Tensor, high: Tensor, scale: Tensor) -> Tensor:
    """max_d max(low_d - x_d, x_d - high_d, 0) / scale_d: inputs (B, D) -> (B,) float64, the
    farthest any value of the row lies outside its training range, in training stds."""
    x = inputs.double().flatten(1)
    outside = torch.maximum(low - x, x - high).clamp_min(0.0) / scale
    return outside.amax(dim=1)


def threshold_for_false_alarms(
    scores: Tensor, range_flags: Tensor, false_alarm_rate: float
) -> float:
    """The distance threshold t flagging (with the range flags) a share ``false_alarm_rate`` of
    held-out in-distribution rows: scores (n,), range_flags (n,) bool.

    k = ⌈(1 - rate)·n⌉ rows must stay unflagged; they are the k lowest scores among the rows the
    range check leaves (t = the k-th smallest of those; +inf when rate is 0).
    """
    if not 0.0 <= false_alarm_rate < 1.0:
        raise ValueError(f"false-alarm rate must be in [0, 1), got {false_alarm_rate!r}")
    if false_alarm_rate == 0.0:
        return math.inf
    keep = max(1, math.ceil((1.0 - false_alarm_rate) * scores.shape[0] - 1e-9))
    candidates = torch.sort(scores.double()[~range_flags]).values
    if candidates.numel() == 0:
        return math.inf
    return float(candidates[min(keep, candidates.numel()) - 1])


@dataclass(frozen=True)
class ShiftRule:
    """A model's fitted shift detector (the card's ``shift`` section and its tensor file)."""

    source: FeatureSource
    means: Tensor
    """(K, F) class means of the training features."""
    precision: Tensor
    """(F, F) inverse of the shared covariance."""
    threshold: float
    """Flag rows whose Mahalanobis distance exceeds this."""
    low: Tensor | None = None
    """(D,) training minimum of each input value (None: no range check)."""
    high: Tensor | None = None
    scale: Tensor | None = None
    margin: float = math.inf
    """Flag rows with an input value more than margin training stds outside its range."""


@dataclass(frozen=True)
class ShiftOutput:
    """Shift answer of one request."""

    score: Tensor
    """(B,) Mahalanobis distance of each row's features to the nearest training class."""
    range_excess: Tensor | None
    """(B,) farthest input value outside its training range, in stds (None: no range check)."""
    flag: Tensor
    """(B,) bool: score > threshold or range excess > margin."""


def apply_shift(rule: ShiftRule, features: Tensor, inputs: Tensor) -> ShiftOutput:
    """The shift output of one request: features (B, F) (the rule's source), inputs (B, ...)."""
    score = mahalanobis_distance(features, rule.means, rule.precision)
    flag = score > rule.threshold
    excess = None
    if rule.low is not None and rule.high is not None and rule.scale is not None:
        excess = range_excess(inputs, rule.low, rule.high, rule.scale)
        flag = flag | (excess > rule.margin)
    return ShiftOutput(score=score, range_excess=excess, flag=flag)


def shift_features(sampler: Sampler, source: FeatureSource, inputs: Tensor) -> Tensor | None:
    """The features a rule of ``source`` models for inputs (B, ...): (B, F) float64; None when
    the source is the prefix and the sampler has none."""
    if source == "prefix":
        return sampler.features(inputs)
    return inputs.flatten(1).double().cpu()


MAX_RANGE_VALUES = 4096
"""Inputs with more values per row than this (images, token ids) get no per-value range check."""


def fit_shift_rule(
    source: FeatureSource,
    train: tuple[Tensor, Tensor, Tensor],
    held_out: tuple[Tensor, Tensor],
    false_alarm_rate: float,
    margin: float,
) -> tuple[ShiftRule, float]:
    """(rule, share of held-out rows it flags) from training (features (n, F), labels (n,),
    inputs (n, ...)) and held-out in-distribution (features (m, F), inputs (m, ...)) rows.

    Float inputs of at most ``MAX_RANGE_VALUES`` values also get the range check.
    """
    features, labels, inputs = train
    means, precision = fit_class_gaussians(features, labels)
    low = high = scale = None
    ranged = inputs.is_floating_point() and inputs[0].numel() <= MAX_RANGE_VALUES
    if ranged:
        low, high, scale = fit_ranges(inputs)
    held_features, held_inputs = held_out
    scores = mahalanobis_distance(held_features, means, precision)
    range_flags = torch.zeros_like(scores, dtype=torch.bool)
    if low is not None and high is not None and scale is not None:
        range_flags = range_excess(held_inputs, low, high, scale) > margin
    threshold = threshold_for_false_alarms(scores, range_flags, false_alarm_rate)
    rule = ShiftRule(
        source, means, precision, threshold, low, high, scale, margin if ranged else math.inf
    )
    flagged = float(apply_shift(rule, held_features, held_inputs).flag.double().mean())
    return rule, flagged
