"""Conformal prediction sets for classification: LAC, APS and RAPS scores, Mondrian thresholds.

Each score gives every class c of a row a value s(x, c), the score the row would have if c were
its label; calibration takes the true classes' scores, and a set holds the classes within the
threshold q̂ (one q̂ per class with Mondrian, class-conditional calibration: Vovk 2012). With p̄
the MC mean probabilities (B, C), classes ranked by p̄ descending (rank o_c from 1), m_c the mass
ranked strictly above c and u ~ U(0, 1) per row:

- LAC (least ambiguous set-valued classifier, Sadinle, Lei & Wasserman 2019): s = 1 - p̄_c; the
  set {c : p̄_c >= 1 - q̂} is the smallest on average for the coverage, and may be empty (no
  class is plausible: a sign to abstain).
- APS (Romano, Sesia & Candès 2020): s = m_c + u·p̄_c; RAPS (Angelopoulos et al. 2021) adds
  λ·max(0, o_c - k_reg), which keeps confident models from paying for long tails. Without
  randomisation u = 1 in calibration and the set is {c : m_c + λ·max(0, o_c - k_reg) < q̂}
  plus the top class (never empty, over-covers); randomised, the same u rule holds on both sides
  ({c : s(x, c) <= q̂}, exact coverage on average, may be empty).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

SetScore = Literal["lac", "aps", "raps"]


@dataclass(frozen=True)
class SetParameters:
    """The score and its options: RAPS's penalty λ and k_reg, randomisation."""

    score: SetScore
    penalty: float = 0.0
    """λ (RAPS only; APS is RAPS with λ = 0)."""
    k_reg: int = 0
    """Ranks up to k_reg are not penalised (RAPS only)."""
    randomized: bool = False


def ranks(probs: Tensor) -> tuple[Tensor, Tensor]:
    """(mass above, rank), both (B, C) float64 in the classes' order: the p̄ mass ranked
    strictly above each class, and its rank from 1 (ties by class index)."""
    probs = probs.double()
    order = torch.sort(probs, dim=1, descending=True, stable=True).indices
    sorted_probs = probs.gather(1, order)
    above = torch.empty_like(probs).scatter_(1, order, sorted_probs.cumsum(dim=1) - sorted_probs)
    positions = torch.arange(1, probs.shape[1] + 1, dtype=torch.float64).expand_as(probs)
    rank = torch.empty_like(probs).scatter_(1, order, positions.contiguous())
    return above, rank


def class_scores(probs: Tensor, parameters: SetParameters, u: Tensor) -> Tensor:
    """s(x, c) for every class: probs (B, C), u (B,) the weight of a class's own p̄ (1, or a
    uniform draw) -> (B, C) float64. LAC ignores u."""
    probs = probs.double()
    if parameters.score == "lac":
        return 1.0 - probs
    above, rank = ranks(probs)
    penalty = parameters.penalty if parameters.score == "raps" else 0.0
    extra = penalty * (rank - parameters.k_reg).clamp_min(0.0)
    return above + u.double().unsqueeze(1) * probs + extra


def calibration_scores(
    probs: Tensor, labels: Tensor, parameters: SetParameters, generator: torch.Generator
) -> Tensor:
    """The true classes' scores (B,): u = 1, or U(0, 1) per row when randomised."""
    u = _weights(probs.shape[0], parameters, generator, calibrating=True)
    return class_scores(probs, parameters, u).gather(1, labels.long().unsqueeze(1)).squeeze(1)


def prediction_sets(
    probs: Tensor, thresholds: Tensor, parameters: SetParameters, generator: torch.Generator
) -> Tensor:
    """Sets (B, C) bool for probs (B, C) and thresholds q̂ () or (C,) (Mondrian, per class)."""
    u = _weights(probs.shape[0], parameters, generator, calibrating=False)
    scores = class_scores(probs, parameters, u)
    q = thresholds.double()
    if parameters.score == "lac" or parameters.randomized:
        return scores <= q
    _, rank = ranks(probs)
    return (scores < q) | (rank == 1)


def _weights(
    rows: int, parameters: SetParameters, generator: torch.Generator, calibrating: bool
) -> Tensor:
    """u per row: uniform when randomised; else 1 in calibration and 0 in the set test (the
    class's own mass not counted: the set holds the class that crosses q̂)."""
    if parameters.randomized:
        return torch.rand(rows, generator=generator, dtype=torch.float64)
    return torch.full((rows,), 1.0 if calibrating else 0.0, dtype=torch.float64)
