"""Semantic segmentation: a class per pixel from (N, B, C, H, W) logits, summed over passes.

Softmax over C at each pixel, or, for a one-channel output (B, 1, H, W), a sigmoid: the
probabilities are then (background 1 - s, foreground s), two classes. The statistics are sums
over passes (:mod:`app.engine.stats.segmentation`) folded in round by round, so a request's
memory does not grow with N (:class:`app.tasks.base.StreamedTask`). Class 0 is the background:
the foreground statistics are over every other class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel, Field
from torch import Tensor

from app.engine.abstention import AbstentionRule, RankingScore, exceeds
from app.engine.evaluation.segmentation import SegmentationReport, segmentation_report
from app.engine.evaluation.targets import mask_targets
from app.engine.sampling import ROW_ALIGN
from app.engine.stats.segmentation import (
    PixelSums,
    SegmentationStats,
    add_passes,
    segmentation_stats,
    sums_standard_error,
)
from app.tasks.base import OutputTensor, RowContext, StreamedTask
from app.tasks.segmentation_maps import FLOAT_MAPS, SegmentationMaps, encode_maps
from app.tasks.segmentation_overlay import overlay, overlay_png

if TYPE_CHECKING:
    from app.engine.predictor import Passes, Prediction

ROUND_VALUES = 524_288
"""Raw values (rows x passes x C x H x W) one round of a request aims at, 2 MiB of float32
outputs; a round holds at least ``ROW_ALIGN`` passes. The rows of one forward call are bounded
apart, by the activations' size (:data:`app.engine.row_calls.CALL_ACTIVATION_BYTES`), and the
prefix runs once per request whatever the rounds (:mod:`app.engine.streaming`)."""
HELD_PER_ROUND_VALUE = 6
"""Float32-sized values held per raw value of a round: the output, its probabilities, and their
float64 copy and square while they are summed."""
HELD_PER_SUM_VALUE = 5
"""Per value of one pass of the request: the float64 sums of p and p² and the answer's maps."""


class ClassArea(BaseModel):
    """One class's area in pixels: in the predicted mask, and over the passes' own masks."""

    label: str | int
    pixels: int
    """Pixels of the class in the predicted mask (argmax of the mean probabilities)."""
    mean: float
    """Mean over passes of the class's pixels in each pass's argmax mask."""
    lower: float
    """Percentile interval of those areas at ``ci_level``."""
    upper: float


class SegmentationRow(BaseModel):
    """One image: summaries of its uncertainty, its class areas and (optionally) its maps."""

    height: int
    width: int
    mean_mutual_information: float
    """Mean over every pixel (nats)."""
    foreground_mutual_information: float
    """Mean over the predicted foreground (every class but 0), 0 without any."""
    uncertain_share: float
    """Share of pixels whose mutual information exceeds ``uncertainty_threshold``."""
    uncertainty_threshold: float
    areas: list[ClassArea]
    abstain: bool | None = Field(
        default=None,
        description="True when the image's mean (or foreground) mutual information exceeds "
        "the card's calibrated threshold (`mcdrop calibrate --refer`); absent for models "
        "without an abstention section in their card.",
    )
    maps: SegmentationMaps | None = None
    """Per-pixel maps in the request's ``maps`` format; absent with ``"maps": "none"``."""


def _probabilities(raw: Tensor) -> Tensor:
    """(N, B, C, H, W) logits -> probabilities over C (a sigmoid's two classes for C = 1)."""
    if raw.shape[2] == 1:
        foreground = torch.sigmoid(raw)
        return torch.cat([1.0 - foreground, foreground], dim=2)
    return torch.softmax(raw, dim=2)


class Segmentation(StreamedTask):
    """``task: segmentation``: (B, C, H, W) logits, or (B, 1, H, W) with a sigmoid."""

    name = "segmentation"

    def output_problem(self, output_shape: list[int], labels: Sequence[str] | None) -> str | None:
        if len(output_shape) != 3 or min(output_shape, default=0) < 1:
            shown = ", ".join(map(str, output_shape))
            return f"segmentation output must be (B, C, H, W) logits, got (B, {shown})"
        classes = max(output_shape[0], 2)
        if labels is not None and len(labels) != classes:
            sigmoid = " (a one-channel output is background and foreground)"
            note = sigmoid if output_shape[0] == 1 else ""
            return f"{len(labels)} labels but {classes} classes per pixel{note}"
        return None

    def values(self, raw: Tensor) -> Tensor:
        return _probabilities(raw)

    def value_dims(self, output_shape: Sequence[int]) -> list[int]:
        return [max(output_shape[0], 2), *output_shape[1:]]

    def statistics(
        self, raw: Tensor, values: Tensor, ci_level: float, inputs: Tensor
    ) -> SegmentationStats:
        return self.summary(add_passes(None, values), ci_level, inputs)

    def round_passes(self, rows: int, row_values: int) -> int:
        fit = ROUND_VALUES // max(rows * row_values, 1)
        return max(ROW_ALIGN, fit // ROW_ALIGN * ROW_ALIGN)

    def accumulate(self, sums: Any, raw: Tensor) -> PixelSums:
        return add_passes(sums, _probabilities(raw))

    def summary(self, sums: Any, ci_level: float, inputs: Tensor) -> SegmentationStats:
        threshold = self.options.uncertainty_threshold
        return segmentation_stats(sums, ci_level, threshold, inputs)

    def abstain(self, stats: Any, rule: AbstentionRule | None) -> Tensor | None:
        """(B,): the image's ``rule.score`` (mean or foreground mutual information) over the
        card's threshold."""
        return exceeds(stats, rule) if rule is not None else None

    def standard_error(self, sums: Any) -> float:
        return sums_standard_error(sums)

    def held_values(
        self, rows: int, n_samples: int, output_shape: Sequence[int], return_samples: bool
    ) -> int:
        row_values = math.prod(self.value_dims(output_shape))
        per_pass = rows * row_values
        round_ = min(n_samples, self.round_passes(rows, row_values))
        kept = per_pass * n_samples if return_samples else 0
        return per_pass * (round_ * HELD_PER_ROUND_VALUE + HELD_PER_SUM_VALUE) + kept

    def rows(self, prediction: Prediction, context: RowContext) -> list[BaseModel]:
        stats: SegmentationStats = prediction.stats
        abstain = prediction.abstain.tolist() if prediction.abstain is not None else None
        rows: list[BaseModel] = []
        for i in range(int(stats.mask.shape[0])):
            row = self._row(stats, i, context)
            row.abstain = abstain[i] if abstain is not None else None
            rows.append(row)
        return rows

    def _row(self, stats: SegmentationStats, i: int, context: RowContext) -> SegmentationRow:
        labels = context.labels
        areas = [
            ClassArea(
                label=labels[c] if labels is not None else c,
                pixels=int(stats.area[i, c]),
                mean=float(stats.area_mean[i, c]),
                lower=float(stats.area_lower[i, c]),
                upper=float(stats.area_upper[i, c]),
            )
            for c in range(int(stats.area.shape[1]))
        ]
        maps = None
        fmt = context.maps
        if fmt != "none":
            floats = {name: getattr(stats, name)[i] for name in FLOAT_MAPS}
            maps = encode_maps(fmt, stats.mask[i], stats.mean[i], floats)
        return SegmentationRow(
            height=int(stats.mask.shape[1]),
            width=int(stats.mask.shape[2]),
            mean_mutual_information=float(stats.mean_mutual_information[i]),
            foreground_mutual_information=float(stats.foreground_mutual_information[i]),
            uncertain_share=float(stats.uncertain_share[i]),
            uncertainty_threshold=self.options.uncertainty_threshold,
            areas=areas,
            maps=maps,
        )

    def outputs(self, dims: Sequence[int], conformal: bool) -> list[OutputTensor]:
        pixels = list(dims[1:])
        per_image = [
            OutputTensor(name, "FP32", [])
            for name in ("mean_mutual_information", "foreground_mutual_information")
        ]
        return [
            OutputTensor("mean", "FP32", list(dims)),
            OutputTensor("mask", "UINT8", pixels),
            *(OutputTensor(name, "FP32", pixels) for name in FLOAT_MAPS),
            *per_image,
            OutputTensor("uncertain_share", "FP32", []),
            OutputTensor("area", "INT64", [dims[0]]),
            *(OutputTensor(name, "FP32", [dims[0]]) for name in ("area_mean", "area_lower")),
            OutputTensor("area_upper", "FP32", [dims[0]]),
        ]

    def output_tensor(self, prediction: Prediction, name: str) -> Tensor:
        tensor: Tensor = getattr(prediction.stats, name)
        return tensor.to(torch.uint8) if name == "mask" else tensor

    def render_png(self, prediction: Prediction, opacity: float) -> bytes:
        """Every image with its mask's contour and its MI heatmap, side by side
        (:mod:`app.tasks.segmentation_overlay`)."""
        stats: SegmentationStats = prediction.stats
        classes = int(stats.mean.shape[1])
        drawn = [
            overlay(stats.image[i], stats.mask[i], stats.mutual_information[i], classes, opacity)
            for i in range(int(stats.mask.shape[0]))
        ]
        return overlay_png(drawn)

    def observations(self, stats: Any) -> dict[str, Tensor]:
        """Per image: the mean over its pixels (a histogram of every pixel would drown the
        per-row histograms of the other models)."""
        return {
            "predictive_entropy": stats.predictive_entropy.flatten(1).mean(dim=1),
            "mutual_information": stats.mean_mutual_information,
        }

    def parse_targets(
        self, targets: Sequence[Any], labels: Sequence[str] | None, output_shape: list[int]
    ) -> Tensor:
        classes = max(output_shape[0], 2)
        return mask_targets(targets, (output_shape[1], output_shape[2]), classes)

    def evaluation(
        self,
        passes: Passes,
        targets: Tensor,
        ci_level: float,
        coverages: Sequence[float],
        ranking_score: RankingScore,
    ) -> dict[str, SegmentationReport]:
        """``segmentation``: per image (in input order) each class's Dice, the foreground
        Dice, the pixel accuracy and the mean mutual information over the image and over its
        predicted foreground, to order images by uncertainty; and their means."""
        return {"segmentation": segmentation_report(passes.values, targets)}
