"""Worst-case error bounds of acquisition scores when their class probabilities are perturbed.

The same pool row gets slightly different float32 probabilities when it is scored in chunks of
another size: the layers run once per request (the deterministic prefix) compute a batch of
another row count, and BLAS and oneDNN pick their blocking and thread split by that count and by
the CPU (AVX2 or AVX-512). A score is then equal only up to how far these differences and the
score's own rounding can move it. These functions give that distance, so that a test can assert
an honest bound instead of a tolerance that passes on one machine and fails on the next.

The perturbation is relative: ``p' = p (1 + e)`` with ``|e| <= rel`` elementwise (probabilities
are softmax outputs, so a logit rounding of δ moves p by a relative ~2δ, tiny ones included).
Every bound is first-order in ``rel``; the second-order terms are below ``rel`` times the first
(``rel`` is about 1e-5 for float32 forwards). The key step, for q > 0 and a change dq,

    |entr(q + dq) - entr(q)| <= |dq| (|ln q| + 1)        (entr(q) = -q ln q),

summed over the terms of an entropy.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

FLOAT32_UNIT = 2.0**-24
"""Unit roundoff of float32: one rounding moves a value by at most this relative amount."""
FLOAT64_UNIT = 2.0**-53


def relative_perturbation(perturbed: Tensor, reference: Tensor) -> Tensor:
    """|p'/p - 1| elementwise, in float64 (reference entries must be positive)."""
    reference = reference.double()
    if bool((reference <= 0).any()):
        raise ValueError("a relative perturbation needs positive reference probabilities")
    return (perturbed.double() / reference - 1.0).abs()


def _entropy_change_bound(q: Tensor, dq: Tensor) -> Tensor:
    """Σ_c |dq_c| (|ln q_c| + 1) over the last dim; a term with dq = 0 counts 0.
    (..., C) -> (...)."""
    weight = torch.where(dq > 0, q.log().abs() + 1.0, torch.zeros_like(q))
    return (dq * weight).sum(dim=-1)


def expected_entropy_bound(probs: Tensor, rel: Tensor) -> Tensor:
    """Bound on the change of (1/N) Σ_t H(p_t) when p -> p (1 + e), |e| <= rel.
    probs, rel: (N, B, C) -> (B,)."""
    return _entropy_change_bound(probs, probs * rel).mean(dim=0)


def joint_entropy_bound(selected: Tensor, selected_rel: Tensor, x: Tensor, x_rel: Tensor) -> Tensor:
    """Bound on the change of H(y_S, y_x), enumerated exactly as BatchBALD does while
    C^|S| <= max_configs. selected, selected_rel: (N, |S|, C); x, x_rel: (N, C) -> scalar.

    With J_t(k) = Π_{i∈S} p_ti(k_i), its relative change is at most EJ_t(k) = Σ_{i∈S} e_ti(k_i);
    p(y_S = k, y_x = c) = (1/N) Σ_t J_t(k) p_tx(c) then moves by at most
    D_kc = (1/N) Σ_t J_t(k) p_tx(c) (EJ_t(k) + e_tx(c)), and H by Σ_kc D_kc (|ln p_kc| + 1).
    """
    n_passes = selected.shape[0]
    joint = torch.ones(n_passes, 1, dtype=torch.float64)
    joint_rel = torch.zeros(n_passes, 1, dtype=torch.float64)
    for i in range(selected.shape[1]):
        joint = (joint[:, :, None] * selected[:, i, None, :]).reshape(n_passes, -1)
        joint_rel = (joint_rel[:, :, None] + selected_rel[:, i, None, :]).reshape(n_passes, -1)
    pair = joint.T @ x / n_passes  # (K, C)
    change = ((joint * joint_rel).T @ x + joint.T @ (x * x_rel)) / n_passes
    return _entropy_change_bound(pair, change).sum()


def batchbald_score_bound(probs: Tensor, rel: Tensor, selected: list[int], x: int) -> float:
    """Bound on the change of BatchBALD's score of row x after the rows ``selected``,
    H(y_S, y_x) - Σ_{i∈S∪x} E_w H(y_i | w), from perturbed probabilities (exact enumeration),
    plus its float64 rounding. probs, rel: (N, B, C)."""
    probs, rel = probs.double(), rel.double()
    joint = joint_entropy_bound(probs[:, selected], rel[:, selected], probs[:, x], rel[:, x])
    conditional = expected_entropy_bound(probs[:, [*selected, x]], rel[:, [*selected, x]]).sum()
    configs: int = probs.shape[2] ** (len(selected) + 1)
    scale = math.log(configs) + len(selected) + 2.0  # H(y_S, y_x) + 1 and the |S| + 1 entropies
    rounding = 4 * (configs + probs.shape[0]) * FLOAT64_UNIT * scale
    return float(joint) + float(conditional) + rounding


def bald_bound(probs: Tensor, rel: Tensor) -> Tensor:
    """Bound on the change of BALD = H(p̄) - (1/N) Σ_t H(p_t) computed in float32 from
    probabilities perturbed by at most rel, plus that computation's own rounding in both runs.
    probs, rel: (N, B, C) -> (B,).

    Rounding: p̄ is a sum of N terms (relative error <= N u), each entropy a sum of C terms
    (relative error <= (C + 2) u, the 2 for log and product), the difference one more rounding.
    """
    probs, rel = probs.double(), rel.double()
    n_passes, _, n_classes = probs.shape
    mean = probs.mean(dim=0)
    perturbation = _entropy_change_bound(mean, (probs * rel).mean(dim=0)) + expected_entropy_bound(
        probs, rel
    )
    total = torch.special.entr(mean).sum(dim=-1)
    expected = torch.special.entr(probs).sum(dim=-1).mean(dim=0)
    mean_rounding = _entropy_change_bound(mean, mean * n_passes * FLOAT32_UNIT)
    sums = (n_classes + n_passes + 3) * FLOAT32_UNIT * (total + expected)
    bound: Tensor = perturbation + 2 * (mean_rounding + sums)
    return bound


def margin_bound(probs: Tensor, rel: Tensor) -> Tensor:
    """Bound on the change of 1 - (p̄_(1) - p̄_(2)) computed in float32 from probabilities
    perturbed by at most rel: each p̄_c, and so each of the two largest, moves by at most
    mean_t p_tc e_tc plus (N + 2) u p̄_c of rounding in each run. probs, rel: (N, B, C) -> (B,)."""
    probs, rel = probs.double(), rel.double()
    moved = (probs * rel).mean(dim=0) + 2 * (probs.shape[0] + 2) * FLOAT32_UNIT * probs.mean(dim=0)
    return 2 * moved.max(dim=-1).values + 4 * FLOAT32_UNIT  # + the subtractions' rounding
