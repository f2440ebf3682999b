"""Models as HTTP worker processes see them when sampling runs in the inference process: every
description (card, input kind, dropout sites, audit, task) and no weights.

The inference process loads each model once and sends :func:`describe` of it to each worker,
which rebuilds it with :func:`described_model`. A described model builds requests like the real
one (``rows_to_tensor``: tokenizer, image pipeline and input checks are in the description) but
cannot sample: its network is an empty module and its predictor has no sampler. Pickled back to
the inference process, inside a job, a described model or its predictor turns into the loaded one
of the same name and version (:func:`serve_from`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from app.engine.dropout import DropoutLayer
from app.engine.predictor import Predictor, TaskSpec
from app.engine.prefix import ModelSplit
from app.engine.sampling import SampleJob
from app.errors import ModelNotReadyError
from app.registry.served import ServedModel

_KEPT = (
    "card",
    "folder",
    "output_shape",
    "load_seconds",
    "warnings",
    "dropout_sites",
    "input_kind",
    "task",
    "audit",
)
"""The ServedModel fields that travel as they are (none of them holds weights)."""

_loaded: Callable[[str, str], ServedModel] | None = None
"""In the inference process: the loaded model of a name and version."""


def serve_from(lookup: Callable[[str, str], ServedModel]) -> None:
    """Make described models unpickled in this process resolve through ``lookup``."""
    global _loaded
    _loaded = lookup


def _resolve(name: str, version: str) -> ServedModel:
    if _loaded is None:
        raise ModelNotReadyError(name, "this process holds no loaded models")
    return _loaded(name, version)


def _resolve_predictor(name: str, version: str) -> Predictor:
    return _resolve(name, version).predictor


class _Site(nn.Module):
    """Stands for a dropout module: its rate, no parameters."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p


class _NoSampler:
    """The sampler of a described model: sampling happens in the inference process."""

    def __init__(self, name: str) -> None:
        self.name = name

    def sample_jobs(self, jobs: list[SampleJob]) -> list[Tensor]:
        raise ModelNotReadyError(self.name, "sampling runs in the inference process")


class DescribedPredictor(Predictor):
    """A predictor without a sampler; pickled, it becomes the loaded model's predictor."""

    def __init__(self, name: str, version: str, spec: TaskSpec) -> None:
        super().__init__(_NoSampler(name), spec)  # type: ignore[arg-type]
        self.model_name = name
        self.model_version = version

    def __reduce__(self) -> tuple[Any, ...]:
        return _resolve_predictor, (self.model_name, self.model_version)


@dataclasses.dataclass(frozen=True)
class DescribedModel(ServedModel):
    """A served model without weights; pickled, it becomes the loaded model."""

    def __reduce__(self) -> tuple[Any, ...]:
        return _resolve, (self.name, self.version)


def _unavailable(*args: Any) -> Any:
    raise RuntimeError("a described model does not run its network")


def describe(model: ServedModel) -> dict[str, Any]:
    """What :func:`described_model` rebuilds ``model`` from (picklable, no weights)."""
    fields = {name: getattr(model, name) for name in _KEPT}
    fields["dropout_layers"] = [
        (layer.index, layer.name, layer.p, layer.mask_kind, layer.alpha, layer.shared)
        for layer in model.dropout_layers
    ]
    split = model.split
    fields["split"] = (split.prefix_fraction, split.reason, split.feature_index)
    fields["spec"] = model.predictor.spec
    return fields


def described_model(fields: dict[str, Any]) -> DescribedModel:
    """The weightless model of :func:`describe`'s fields."""
    fields = dict(fields)
    card, spec = fields["card"], fields.pop("spec")
    fraction, reason, feature_index = fields.pop("split")
    layers = [
        DropoutLayer(index, name, _Site(p), kind, alpha, shared)
        for index, name, p, kind, alpha, shared in fields.pop("dropout_layers")
    ]
    return DescribedModel(
        module=nn.Module(),
        dropout_layers=layers,
        split=ModelSplit(_unavailable, _unavailable, fraction, reason, feature_index=feature_index),
        predictor=DescribedPredictor(card.name, card.version, spec),
        **fields,
    )
