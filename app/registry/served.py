"""What a loaded model is to the rest of mcdrop: :class:`ServedModel`, and the engine settings
every load uses (:class:`LoadOptions`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from app.engine.dropout import DropoutLayer
from app.engine.predictor import Predictor
from app.engine.prefix import ModelSplit
from app.inputs.base import InputKind, Rows
from app.registry.auditing import Audit
from app.registry.card import ModelCard
from app.registry.network import DropoutSite
from app.tasks import Task


@dataclass(frozen=True)
class LoadOptions:
    """Engine settings that apply to every model loaded."""

    max_sample_rows: int = 16384
    device: torch.device | str = "cpu"
    dtype: torch.dtype = torch.float32
    max_image_pixels: int = 16_777_216
    """Image models: the largest image (width x height) decoded."""
    shift: bool = True
    """Load the card's shift detector (False: ``mcdrop calibrate --ood`` replacing it)."""

    @property
    def value_limit(self) -> float:
        """Largest input magnitude ``dtype`` holds; beyond it a row overflows."""
        return float(torch.finfo(self.dtype).max)


@dataclass(frozen=True)
class ServedModel:
    """A loaded model with everything the API needs to describe and run it."""

    card: ModelCard
    folder: Path
    module: nn.Module
    dropout_layers: list[DropoutLayer]
    """The sampled dropout layers (``dropout_sites`` lists every site, sampled or not)."""
    output_shape: list[int]
    split: ModelSplit
    predictor: Predictor
    task: Task
    """What the output means (:mod:`app.tasks`): statistics, rows, v2 outputs, metrics."""
    load_seconds: float
    warnings: list[str]
    input_kind: InputKind
    """What the model takes: parses, checks and describes its inputs (:mod:`app.inputs`)."""
    dropout_sites: list[DropoutSite] = field(default_factory=list)
    audit: Audit | None = None
    """The stochasticity audit at load: sources of randomness not sampled, and the variance
    of the model's own torch MC dropout against mcdrop's passes on the probe."""

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> str:
        return self.card.version

    def rows_to_tensor(self, rows: Rows, max_rows: int, field: str = "inputs") -> Tensor:
        """The request's rows as the model's input tensor (B, ...), checked by the input kind;
        errors name the offending field, row and position."""
        return self.input_kind.rows(rows, max_rows, field)
