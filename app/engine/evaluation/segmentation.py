"""Metrics of segmentation masks against target masks, per image.

``mask, target: (B, H, W)`` long class indices, class 0 the background. Dice of a class
2|P ∩ T| / (|P| + |T|) is 1 where the class is in neither mask (nothing to find, nothing
found); the foreground Dice is that of "not class 0" (lesion vs the rest), the number a
referral curve (retain the most certain images, Dice on the retained ones) is made of.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from app.engine.evaluation.referral import Referral, mean_referral
from app.engine.stats.segmentation import (
    add_passes,
    class_argmax,
    foreground_mean,
    pixel_entropies,
)


def _dice(predicted: Tensor, truth: Tensor) -> Tensor:
    """Dice over the pixel axes of bool maps (B, ..., H, W) -> (B, ...) float64, 1 if both
    are empty."""
    both = (predicted & truth).flatten(-2).sum(dim=-1).double()
    sizes = (predicted.flatten(-2).sum(dim=-1) + truth.flatten(-2).sum(dim=-1)).double()
    return torch.where(sizes > 0, 2 * both / sizes.clamp_min(1.0), torch.ones_like(sizes))


def class_dice(mask: Tensor, target: Tensor, classes: int) -> Tensor:
    """Dice of each class per image. (B, H, W) x2 -> (B, C) float64."""
    ids = torch.arange(classes).view(1, classes, 1, 1)
    return _dice(mask.unsqueeze(1) == ids, target.unsqueeze(1) == ids)


def foreground_dice(mask: Tensor, target: Tensor) -> Tensor:
    """Dice of the foreground (every class but 0) per image. (B, H, W) x2 -> (B,) float64."""
    return _dice(mask != 0, target != 0)


@dataclass(frozen=True)
class SegmentationImageScore:
    """One image: its Dice scores and its uncertainty (nats), to order images by."""

    dice: list[float]
    """Per class (class 0 included)."""
    foreground_dice: float
    mean_mutual_information: float
    foreground_mutual_information: float
    """Over the predicted foreground (0 without any)."""
    pixel_accuracy: float


@dataclass(frozen=True)
class SegmentationReport:
    """Per-image scores, in input order, and their means over the images."""

    images: list[SegmentationImageScore]
    mean_dice: list[float]
    """Per class, the mean over images."""
    mean_foreground_dice: float
    pixel_accuracy: float
    referral: list[Referral] = field(default_factory=list)
    """Mean foreground Dice of the retained images against the referral rate, the images of
    highest mean MI, mean predictive entropy or mean 1 - confidence referred first."""


def segmentation_report(probs: Tensor, targets: Tensor) -> SegmentationReport:
    """Score passes ``probs: (N, B, C, H, W)`` against target masks ``targets: (B, H, W)``:
    the predicted mask is the argmax of p̄ per pixel, as served."""
    mean, total, _, mi = pixel_entropies(add_passes(None, probs))
    mask = class_argmax(mean.unsqueeze(0))[0]
    dice = class_dice(mask, targets, int(mean.shape[1]))
    fg = foreground_dice(mask, targets)
    accuracy = (mask == targets).flatten(1).double().mean(dim=1)
    mean_mi = mi.flatten(1).mean(dim=1)
    fg_mi = foreground_mean(mi, mask)
    images = [
        SegmentationImageScore(
            dice=dice[i].tolist(),
            foreground_dice=float(fg[i]),
            mean_mutual_information=float(mean_mi[i]),
            foreground_mutual_information=float(fg_mi[i]),
            pixel_accuracy=float(accuracy[i]),
        )
        for i in range(int(mask.shape[0]))
    ]
    return SegmentationReport(
        images=images,
        mean_dice=dice.mean(dim=0).tolist(),
        mean_foreground_dice=float(fg.mean()),
        pixel_accuracy=float(accuracy.mean()),
        referral=[mean_referral("dice", image_orderings(mean, total, mi), fg)],
    )


def image_orderings(mean: Tensor, entropy: Tensor, information: Tensor) -> dict[str, Tensor]:
    """Per-image uncertainty, the means over pixels of MI, H(p̄) and 1 - max_c p̄ (B,), from
    p̄ (B, C, H, W) and the (B, H, W) entropy and MI maps."""
    return {
        "mutual_information": information.flatten(1).mean(dim=1),
        "predictive_entropy": entropy.flatten(1).mean(dim=1),
        "confidence": 1.0 - mean.amax(dim=1).flatten(1).mean(dim=1),
    }
