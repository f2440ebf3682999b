"""Segmentation statistics, accumulated over Monte Carlo passes in rounds.

``probs: (n, B, C, H, W)``: n passes of one round, B images, C classes (channels first, as the
model gives them), H x W pixels, a probability vector over C at each pixel. A request's passes
arrive round by round; :func:`add_passes` folds each round into :class:`PixelSums` (memory
independent of N), :func:`segmentation_stats` turns the sums into the answer. Entropies in nats.

With S_1 = Σ_t p_t, S_2 = Σ_t p_t², A = Σ_t Σ_c p_tc ln p_tc over N passes, per pixel:
p̄ = S_1 / N, predictive entropy H(p̄), expected entropy mean_t H(p_t) = -A / N, mutual
information H(p̄) - mean_t H(p_t) (>= 0; two passes that put all mass on different classes give
ln 2). Each pass's argmax mask gives each class's area in that pass: ``areas (N, B, C)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from app.engine.stats.classification import entropy
from app.engine.stats.intervals import percentile_interval


@dataclass(frozen=True)
class PixelSums:
    """Running sums over the passes seen so far (float64 where they are sums of floats)."""

    passes: int
    probability: Tensor
    """(B, C, H, W): S_1 = Σ_t p_t."""
    squared: Tensor
    """(B, C, H, W): S_2 = Σ_t p_t², for the MC standard error of p̄."""
    plogp: Tensor
    """(B, H, W): A = Σ_t Σ_c p_tc ln p_tc = -Σ_t H(p_t)."""
    areas: Tensor
    """(N, B, C) long: pixels of class c in pass t's argmax mask (small: no pixel axes)."""


def class_argmax(probs: Tensor) -> Tensor:
    """Index of the largest class (first on ties) over dim 2 of (n, B, C, H, W) -> (n, B, H, W)
    long: one elementwise comparison per class, far faster than ``argmax`` over a strided
    middle axis."""
    best = probs[:, :, 0]
    index = torch.zeros(best.shape, dtype=torch.long)
    for c in range(1, int(probs.shape[2])):
        plane = probs[:, :, c]
        better = plane > best
        index.masked_fill_(better, c)
        best = torch.maximum(best, plane)
    return index


def class_areas(masks: Tensor, classes: int) -> Tensor:
    """Pixels of each class per mask: (..., H, W) long -> (..., C) long."""
    return torch.stack([(masks == c).flatten(-2).sum(dim=-1) for c in range(classes)], dim=-1)


def add_passes(sums: PixelSums | None, probs: Tensor) -> PixelSums:
    """Fold one round of passes into the sums (None: the first round). Terms are summed in
    float64. probs: (n, B, C, H, W) -> sums over N + n passes."""
    if probs.dim() != 5 or probs.shape[0] < 1:
        raise ValueError(f"probs must be (n, B, C, H, W) with n >= 1, got {tuple(probs.shape)}")
    wide = torch.float64
    part = PixelSums(
        passes=int(probs.shape[0]),
        probability=probs.sum(dim=0, dtype=wide),
        squared=(probs * probs).sum(dim=0, dtype=wide),
        plogp=-torch.special.entr(probs.clamp_min(0.0)).sum(dim=2).sum(dim=0, dtype=wide),
        areas=class_areas(class_argmax(probs), int(probs.shape[2])),
    )
    if sums is None:
        return part
    return PixelSums(
        passes=sums.passes + part.passes,
        probability=sums.probability + part.probability,
        squared=sums.squared + part.squared,
        plogp=sums.plogp + part.plogp,
        areas=torch.cat([sums.areas, part.areas]),
    )


@dataclass(frozen=True)
class SegmentationStats:
    """Per pixel (B, H, W) (``mean`` (B, C, H, W)) and per image (B,) (areas (B, C))."""

    mean: Tensor
    """p̄ per class and pixel."""
    mask: Tensor
    """long: argmax of p̄ per pixel (first class on ties), the predicted mask."""
    predictive_entropy: Tensor
    expected_entropy: Tensor
    mutual_information: Tensor
    mean_mutual_information: Tensor
    """(B,): mutual information averaged over every pixel of the image."""
    foreground_mutual_information: Tensor
    """(B,): averaged over the pixels of the predicted mask that are not class 0 (0 where the
    mask has no foreground)."""
    uncertain_share: Tensor
    """(B,): share of pixels whose mutual information exceeds the uncertainty threshold."""
    area: Tensor
    """(B, C) long: pixels of each class in the predicted mask."""
    area_mean: Tensor
    """(B, C): mean over passes of each class's area in the pass's own argmax mask."""
    area_lower: Tensor
    """(B, C): lower percentile of those areas at the interval level."""
    area_upper: Tensor
    image: Tensor
    """(B, *input) the request's input rows, for the rendered overlay."""


def pixel_entropies(sums: PixelSums) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(p̄ (B, C, H, W), H(p̄), mean_t H(p_t), MI (B, H, W)) from the sums; MI clamped at 0."""
    mean = sums.probability / sums.passes
    total = entropy(mean.movedim(1, -1))
    aleatoric = -sums.plogp / sums.passes
    return mean, total, aleatoric, (total - aleatoric).clamp_min(0.0)


def foreground_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values (B, H, W)`` over pixels where ``mask (B, H, W)`` is not class 0;
    0 for an image with no foreground. -> (B,)."""
    foreground = (mask != 0).double()
    pixels = foreground.flatten(1).sum(dim=1)
    total = (values.double() * foreground).flatten(1).sum(dim=1)
    return torch.where(pixels > 0, total / pixels.clamp_min(1.0), torch.zeros_like(total))


def segmentation_stats(
    sums: PixelSums, ci_level: float, uncertainty_threshold: float, image: Tensor
) -> SegmentationStats:
    """The answer of one request from its sums over N passes; ``image`` its input rows."""
    mean, total, aleatoric, mi = pixel_entropies(sums)
    mask = class_argmax(mean.unsqueeze(0))[0]
    classes = int(mean.shape[1])
    lower, upper = percentile_interval(sums.areas.double(), ci_level)
    return SegmentationStats(
        mean=mean.float(),
        mask=mask,
        predictive_entropy=total.float(),
        expected_entropy=aleatoric.float(),
        mutual_information=mi.float(),
        mean_mutual_information=mi.flatten(1).mean(dim=1).float(),
        foreground_mutual_information=foreground_mean(mi, mask).float(),
        uncertain_share=(mi > uncertainty_threshold).flatten(1).double().mean(dim=1).float(),
        area=class_areas(mask, classes),
        area_mean=sums.areas.double().mean(dim=0).float(),
        area_lower=lower.float(),
        area_upper=upper.float(),
        image=image,
    )


def sums_standard_error(sums: PixelSums) -> float:
    """Largest MC standard error of p̄ over every image, class and pixel: s / sqrt(N), s the
    unbiased std from S_1, S_2 ((S_2 - S_1²/N) / (N - 1)); infinity for N = 1."""
    n = sums.passes
    if n < 2:
        return math.inf
    variance = (sums.squared - sums.probability**2 / n).clamp_min(0.0) / (n - 1)
    return float((variance.max() / n).sqrt())
