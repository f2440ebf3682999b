"""The card's ``shift`` section and its tensor file <-> :class:`app.engine.shift.ShiftRule`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file

from app.engine.shift import ShiftRule
from app.errors import ModelLoadError
from app.registry.card import ModelCard
from app.registry.torch_loader import sha256_of

if TYPE_CHECKING:
    from app.registry.served import ServedModel

_RANGE_KEYS = ("low", "high", "scale")


def save_shift_tensors(path: Path, rule: ShiftRule) -> str:
    """Write the rule's tensors (float64) to a safetensors file; returns its sha256."""
    tensors = {"means": rule.means, "precision": rule.precision}
    for key in _RANGE_KEYS:
        value = getattr(rule, key)
        if value is not None:
            tensors[key] = value
    save_file({k: v.double().contiguous() for k, v in tensors.items()}, str(path))
    return sha256_of(path)


def load_shift_rule(card: ModelCard, folder: Path) -> ShiftRule | None:
    """The card's shift rule with its tensors, checked (checksum, shapes); None without one."""
    spec = card.shift
    if spec is None:
        return None
    path = (folder / spec.file).resolve()
    if not path.is_relative_to(folder.resolve()) or not path.is_file():
        raise ModelLoadError(f"model '{card.name}': shift file '{spec.file}' not found")
    if spec.sha256 is not None and sha256_of(path) != spec.sha256:
        raise ModelLoadError(f"model '{card.name}': shift file '{spec.file}' sha256 mismatch")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises several kinds for a corrupt file
        raise ModelLoadError(f"model '{card.name}': cannot read '{spec.file}': {exc}") from exc
    means, precision = tensors.get("means"), tensors.get("precision")
    if means is None or precision is None or means.dim() != 2:
        raise ModelLoadError(f"model '{card.name}': '{spec.file}' lacks means (K, F) / precision")
    features = means.shape[1]
    if precision.shape != (features, features):
        raise ModelLoadError(
            f"model '{card.name}': shift precision is not ({features}, {features})"
        )
    ranges = [tensors.get(key) for key in _RANGE_KEYS]
    low, high, scale = ranges if all(r is not None for r in ranges) else (None, None, None)
    return ShiftRule(
        source=spec.source,
        means=means.double(),
        precision=precision.double(),
        threshold=spec.threshold,
        low=low,
        high=high,
        scale=scale,
        margin=spec.margin if low is not None else float("inf"),
    )


def check_feature_width(card: ModelCard, rule: ShiftRule, features: torch.Tensor | None) -> None:
    """Refuse a shift rule whose feature width does not match the model's features (B, F)."""
    if features is None:
        raise ModelLoadError(
            f"model '{card.name}': the card's shift section models the prefix features, but "
            "this model has no deterministic prefix now; recalibrate with --ood"
        )
    if features.shape[1] != rule.means.shape[1]:
        raise ModelLoadError(
            f"model '{card.name}': shift file has {rule.means.shape[1]} features, the model "
            f"gives {features.shape[1]}; recalibrate with --ood"
        )


def shift_features_note(model: ServedModel) -> str:
    """What ``mcdrop calibrate --ood`` models for this model, or why it has nothing to model."""
    if model.card.shift is not None:
        return f"calibrated on {model.card.shift.source} features: {model.card.shift.source_note}"
    if model.split.feature_index is not None:
        return "prefix: the activation entering the first dropout"
    if model.card.input.type == "tensor":
        return f"model input only (no deterministic prefix: {model.split.reason})"
    return f"none: no deterministic prefix ({model.split.reason}) and the input is not a tensor"
