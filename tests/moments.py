"""Comparing two sets of MC passes by their moments, within Monte Carlo error.

Each estimate (mean probability, per-class std, mutual information) is a smooth function of
sample means, so its standard error is the standard deviation of its influence (its first-order
term per pass) over sqrt(N); two independent runs differ by sqrt(se_a² + se_b²). Estimates that
differ by more than ``Z`` of those are a real difference, not MC noise (a false alarm at Z = 5 is
a 1-in-1.7-million event per compared value under normality).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

Z = 5.0
"""Standard errors two estimates may differ by."""


@dataclass(frozen=True)
class Moments:
    """Estimates of one set of passes, each (B, ...) with its standard error."""

    mean: Tensor
    mean_se: Tensor
    std: Tensor
    std_se: Tensor
    mi: Tensor
    mi_se: Tensor


def moments(probs: Tensor) -> Moments:
    """Moments of probabilities (N, B, C): mean p̄ (B, C), std (B, C), MI (B,), with standard
    errors. MI = H(p̄) - mean_t H(p_t) has influence g·p_t - H(p_t), g = -(log p̄ + 1); the
    variance s² has influence (p_t - p̄)², and se(s) = se(s²) / (2 s)."""
    p = probs.double()
    n = p.shape[0]
    mean = p.mean(0)
    centred = (p - mean) ** 2
    var = centred.mean(0)
    std = var.sqrt()
    std_se = centred.std(0) / n**0.5 / (2 * std.clamp_min(1e-12))
    entropy = -(p * p.clamp_min(1e-30).log()).sum(-1)
    gradient = -(mean.clamp_min(1e-30).log() + 1)
    influence = (p * gradient).sum(-1) - entropy
    mi = -(mean * mean.clamp_min(1e-30).log()).sum(-1) - entropy.mean(0)
    return Moments(mean, p.std(0) / n**0.5, std, std_se, mi, influence.std(0) / n**0.5)


def differences(a: Moments, b: Moments) -> dict[str, float]:
    """The largest |a - b| / sqrt(se_a² + se_b²) of each estimate (in standard errors)."""
    pairs = {
        "mean": (a.mean, b.mean, a.mean_se, b.mean_se),
        "std": (a.std, b.std, a.std_se, b.std_se),
        "mi": (a.mi, b.mi, a.mi_se, b.mi_se),
    }
    return {
        name: float(((x - y).abs() / (sx**2 + sy**2).sqrt().clamp_min(1e-12)).max())
        for name, (x, y, sx, sy) in pairs.items()
    }


def assert_moments_match(served: Tensor, reference: Tensor) -> dict[str, float]:
    """Served and reference probabilities (N, B, C) agree in mean, std and MI within ``Z``
    standard errors; returns the differences (in standard errors)."""
    found = differences(moments(served), moments(reference))
    assert max(found.values()) < Z, f"moments differ beyond MC error: {found}"
    return found


def probabilities(logits: Tensor) -> Tensor:
    """Softmax over the last dimension of logits (N, B, C)."""
    return torch.softmax(logits.double(), -1)
