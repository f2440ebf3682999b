"""Split conformal prediction on top of the MC predictive distribution.

Calibration rows not used in training give n scores s_1..s_n; the conformal quantile q̂ is their
⌈(n + 1)·level⌉-th smallest value. For a new exchangeable row with score s, P(s <= q̂) >= level
(Vovk et al. 2005; Angelopoulos & Bates 2021), whatever the model.

- Regression: s = max_d |y_d - ȳ_d| / std_d (the normalised residual, std the total predictive
  std of the MC passes, aleatoric included), so the band ȳ ± q̂·std holds every output of the
  row with probability >= level.
- Classification: a set score on the MC mean probabilities p̄ (:mod:`app.engine.conformal_sets`:
  LAC, APS, RAPS, randomised or not, one q̂ or one per class). APS (Romano, Sesia & Candès 2020):
  classes sorted by p̄, descending; s is the mass of the classes ranked strictly above the true
  one plus its own. The set holds the classes whose mass ranked strictly above them is below
  q̂: every class with a score <= q̂ and never empty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from app.engine.conformal_sets import SetParameters, prediction_sets

ConformalKind = Literal["normalised_residual", "lac", "aps", "raps"]
SET_KINDS: tuple[ConformalKind, ...] = ("lac", "aps", "raps")
"""Classification's kinds (the set scores)."""


def conformal_quantile(scores: Tensor, level: float) -> float:
    """The ⌈(n + 1)·level⌉-th smallest of n scores (B,) -> float; inf when that rank exceeds n.

    With this q̂, a new exchangeable score is <= q̂ with probability >= level.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"conformal level must be in (0, 1), got {level!r}")
    n = int(scores.shape[0])
    rank = math.ceil((n + 1) * level - 1e-9)
    if rank > n:
        return math.inf
    return float(scores.double().sort().values[rank - 1])


def minimum_rows(level: float) -> int:
    """Fewest calibration rows giving a finite quantile: n with ⌈(n + 1)·level⌉ <= n."""
    return max(1, math.ceil(level / (1.0 - level) - 1e-9))


def normalised_residuals(mean: Tensor, std: Tensor, target: Tensor) -> Tensor:
    """max_d |y_d - ȳ_d| / std_d per row. mean, std, target: (B, D) -> (B,).

    A zero std makes an exact target score 0 and any other +inf.
    """
    residual = (target.double() - mean.double()).abs()
    std = std.double()
    ratio = torch.where(std > 0, residual / std.clamp_min(1e-300), residual * math.inf)
    ratio = torch.where(residual == 0, torch.zeros_like(ratio), ratio)
    return ratio.amax(dim=1)


def conformal_band(mean: Tensor, std: Tensor, quantile: float) -> tuple[Tensor, Tensor]:
    """(ȳ - q̂·std, ȳ + q̂·std), each (B, D) like mean and std."""
    return mean - quantile * std, mean + quantile * std


def _ranked_mass(probs: Tensor) -> tuple[Tensor, Tensor]:
    """(order, mass above): order (B, C) sorts classes by p̄ descending (ties by index); mass
    above (B, C) is, for each class in the original order, the p̄ mass ranked strictly above it."""
    probs = probs.double()
    order = torch.sort(probs, dim=1, descending=True, stable=True).indices
    sorted_probs = probs.gather(1, order)
    above_sorted = sorted_probs.cumsum(dim=1) - sorted_probs
    above = torch.empty_like(above_sorted).scatter_(1, order, above_sorted)
    return order, above


def aps_scores(probs: Tensor, labels: Tensor) -> Tensor:
    """APS score of the true class: mass ranked strictly above it plus its own p̄.
    probs (B, C), labels (B,) long -> (B,)."""
    _, above = _ranked_mass(probs)
    own = probs.double().gather(1, labels.unsqueeze(1))
    return (above.gather(1, labels.unsqueeze(1)) + own).squeeze(1)


def aps_sets(probs: Tensor, threshold: float) -> Tensor:
    """Prediction sets (B, C) bool: the classes whose mass ranked strictly above them is below
    `threshold` (the top class always; every class when the threshold is inf)."""
    _, above = _ranked_mass(probs)
    return above < threshold


@dataclass(frozen=True)
class ConformalRule:
    """A model's calibrated conformal rule: `quantile` is q̂ for every kind."""

    kind: ConformalKind
    level: float
    quantile: float
    penalty: float = 0.0
    """RAPS's λ."""
    k_reg: int = 0
    """RAPS's unpenalised ranks."""
    randomized: bool = False
    """Sets drawn with the randomised score (APS, RAPS)."""
    class_quantiles: tuple[float, ...] | None = None
    """Mondrian (class-conditional): one q̂ per class, used instead of `quantile`."""


@dataclass(frozen=True)
class ConformalOutput:
    """Conformal answer of one request: a band (regression) or sets (classification)."""

    level: float
    lower: Tensor | None = None
    """(B, D) lower ends of ȳ ± q̂·std."""
    upper: Tensor | None = None
    sets: Tensor | None = None
    """(B, C) bool: the classes in each row's prediction set."""


def apply_rule(
    rule: ConformalRule, mean: Tensor, std: Tensor | None, seed: int = 0
) -> ConformalOutput:
    """The conformal output for summary statistics: mean (B, D) and std (B, D) for regression,
    mean probabilities (B, C) for classification (std unused; ``seed`` draws the randomised
    sets' uniforms, one per row)."""
    if rule.kind in SET_KINDS:
        parameters = SetParameters(rule.kind, rule.penalty, rule.k_reg, rule.randomized)  # type: ignore[arg-type]
        q = rule.class_quantiles if rule.class_quantiles is not None else rule.quantile
        generator = torch.Generator().manual_seed(seed)
        sets = prediction_sets(mean, torch.tensor(q, dtype=torch.float64), parameters, generator)
        return ConformalOutput(level=rule.level, sets=sets)
    assert std is not None
    lower, upper = conformal_band(mean, std, rule.quantile)
    return ConformalOutput(level=rule.level, lower=lower, upper=upper)


def mondrian_quantiles(scores: Tensor, labels: Tensor, classes: int, level: float) -> Tensor:
    """(C,) float64: each class's conformal quantile over the calibration rows of that class
    (inf, so the class is always in the set, when it has too few rows for a finite one)."""
    out = torch.full((classes,), math.inf, dtype=torch.float64)
    for c in range(classes):
        own = scores[labels == c]
        if own.numel() > 0:
            out[c] = conformal_quantile(own, level)
    return out
