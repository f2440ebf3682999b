"""Model folder -> ready-to-sample model: card, architecture, verified weights, sampler."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from app.architectures import build_bundled
from app.engine.abstention import AbstentionRule
from app.engine.conformal import ConformalRule
from app.engine.dropout import DropoutLayer, require_active_dropout
from app.engine.images import ImagePipeline, images_to_tensor, require_pillow
from app.engine.inputs import rows_to_tensor
from app.engine.predictor import Predictor, TaskSpec
from app.engine.prefix import ModelSplit
from app.engine.sampler import MCSampler
from app.engine.scripted import ScriptedSampler
from app.errors import ModelLoadError
from app.registry.auditing import Audit, audit_network
from app.registry.card import ImageInputSpec, ModelCard, read_card
from app.registry.hf_image import load_image_classifier
from app.registry.hf_text import load_text_classifier
from app.registry.network import DropoutSite, Network
from app.registry.sites import torch_network
from app.registry.text import TextEncoder
from app.tasks import Task

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadOptions:
    """Engine settings that apply to every model loaded."""

    max_sample_rows: int = 16384
    device: torch.device | str = "cpu"
    dtype: torch.dtype = torch.float32
    max_image_pixels: int = 16_777_216
    """Image models: the largest image (width x height) decoded."""


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
    dropout_sites: list[DropoutSite] = field(default_factory=list)
    text: TextEncoder | None = None
    """Text models: turns request texts into token rows."""
    images: ImagePipeline | None = None
    """Image models: decoded images -> input rows (float rows of the input shape work too)."""
    max_image_pixels: int = 16_777_216
    audit: Audit | None = None
    """The stochasticity audit at load: sources of randomness not sampled, and the variance
    of the model's own torch MC dropout against mcdrop's passes on the probe."""

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> str:
        return self.card.version

    def rows_to_tensor(
        self, rows: Sequence[Any] | np.ndarray, max_rows: int, field: str = "inputs"
    ) -> Tensor:
        """The request's rows as the model's input tensor (B, ...): numbers checked against the
        input shape, or texts tokenized; errors name the offending field."""
        if self.text is not None:
            return self.text.rows_to_tensor(list(rows), max_rows, field)
        if not isinstance(rows, np.ndarray):
            images = images_to_tensor(rows, self.images, max_rows, self.max_image_pixels, field)
            if images is not None:
                return images
        return rows_to_tensor(rows, self.card.input.shape, max_rows, field)


def load_model_folder(folder: Path, options: LoadOptions = LoadOptions()) -> ServedModel:
    """Load, verify and probe one model folder; raises ModelLoadError with the reason."""
    started = time.perf_counter()
    card = read_card(folder)
    if card.architecture.huggingface is not None and card.input.type == "image":
        network = load_image_classifier(card, folder)
        network.module.to(options.device, options.dtype)
    elif card.architecture.huggingface is not None:
        network = load_text_classifier(card, folder)
        network.module.to(options.device, options.dtype)
    else:
        network = _load_torch(card, folder, options)
    card, module, layers = network.card, network.module, network.layers
    require_active_dropout(layers, card.name)
    sampler: MCSampler | ScriptedSampler
    rows, device, dtype = options.max_sample_rows, options.device, options.dtype
    if network.text is not None:
        rows = network.text.chunk_rows(rows)
    if isinstance(module, torch.jit.ScriptModule):
        sampler = ScriptedSampler(module, layers, max_rows=rows, device=device, dtype=dtype)
    else:
        sampler = MCSampler(
            module, layers, max_rows=rows, device=device, dtype=dtype, split=network.split
        )
    spec = TaskSpec(
        task=card.task,
        threshold=card.multilabel.threshold if card.multilabel else 0.5,
        noise_variance=(
            1.0 / card.regression.tau if card.regression and card.regression.tau else None
        ),
        variance_head=bool(card.regression and card.regression.variance_head),
        abstention=(
            AbstentionRule(card.abstention.score, card.abstention.threshold)
            if card.abstention is not None
            else None
        ),
        conformal=(
            ConformalRule(card.conformal.kind, card.conformal.level, card.conformal.quantile)
            if card.conformal is not None
            else None
        ),
    )
    predictor = Predictor(sampler, spec)
    output_shape = _probe_output_shape(module, card, network.probe[:2].to(options.device))
    predictor.task.check_output(card.name, output_shape, card.labels)
    audit = audit_network(network, sampler)
    elapsed = time.perf_counter() - started
    logger.info("loaded model '%s' v%s from %s in %.3fs", card.name, card.version, folder, elapsed)
    return ServedModel(
        card=card,
        folder=folder,
        module=module,
        dropout_layers=layers,
        output_shape=output_shape,
        split=network.split,
        predictor=predictor,
        task=predictor.task,
        load_seconds=elapsed,
        warnings=network.warnings + audit.warnings,
        dropout_sites=network.sites,
        audit=audit,
        text=network.text,
        images=network.images,
        max_image_pixels=options.max_image_pixels,
    )


def _image_pipeline(card: ModelCard) -> ImagePipeline | None:
    """The card's image preprocessing; ModelLoadError naming the extra without Pillow."""
    if not isinstance(card.input, ImageInputSpec):
        return None
    try:
        require_pillow()
    except ModelLoadError as exc:
        raise ModelLoadError(f"model '{card.name}': {exc.message}") from None
    return card.input.preprocessing()


def _load_torch(card: ModelCard, folder: Path, options: LoadOptions) -> Network:
    """A bundled, Python-file or TorchScript model with its dropout sites and split."""
    images = _image_pipeline(card)
    module = _build_module(card, folder)
    if card.weights.file is not None:
        _load_weights(module, card, folder)
    module.eval().to(options.device, options.dtype)
    return torch_network(card, module, _probe_input(card, options, rows=3), images)


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _inside(folder: Path, relative: str, what: str) -> Path:
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise ModelLoadError(f"{folder}: {what} '{relative}' points outside the model folder")
    if not path.is_file():
        raise ModelLoadError(f"{folder}: {what} '{relative}' not found")
    return path


def _build_module(card: ModelCard, folder: Path) -> nn.Module:
    arch = card.architecture
    try:
        if arch.bundled is not None:
            return build_bundled(arch.bundled, arch.kwargs)
        if arch.torchscript is not None:
            path = _inside(folder, arch.torchscript, "architecture.torchscript")
            scripted: nn.Module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
            return scripted
        assert arch.file is not None and arch.class_name is not None
        cls = _import_class(folder, arch.file, arch.class_name, card.name)
        return cls(**arch.kwargs)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"{folder}: cannot build the architecture: {exc}") from exc


def _import_class(folder: Path, file: str, class_name: str, model_name: str) -> type[nn.Module]:
    path = _inside(folder, file, "architecture.file")
    module_name = f"mcdrop_models.{model_name.replace('-', '_').replace('.', '_')}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"{folder}: cannot import {file}")
    python_module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = python_module
    spec.loader.exec_module(python_module)
    cls = getattr(python_module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ModelLoadError(f"{folder}: {file} has no nn.Module class '{class_name}'")
    return cls


def _load_weights(module: nn.Module, card: ModelCard, folder: Path) -> None:
    assert card.weights.file is not None
    path = _inside(folder, card.weights.file, "weights.file")
    if card.weights.sha256 is None:
        logger.warning(
            "model '%s': no weights.sha256 in the card; checksum not verified", card.name
        )
    else:
        actual = sha256_of(path)
        if actual != card.weights.sha256:
            raise ModelLoadError(
                f"{path}: sha256 mismatch (card says {card.weights.sha256}, file is {actual})"
            )
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ModelLoadError(f"{path}: expected a state dict, got {type(state).__name__}")
        module.load_state_dict(state, strict=True)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"{path}: cannot load weights: {exc}") from exc


def _probe_input(card: ModelCard, options: LoadOptions, rows: int) -> torch.Tensor:
    """Deterministic example rows of the card's input shape (values in [0, 1))."""
    generator = torch.Generator().manual_seed(0)
    probe = torch.rand((rows, *card.input.shape), generator=generator)
    return probe.to(options.device, options.dtype)


def _probe_output_shape(module: nn.Module, card: ModelCard, probe: torch.Tensor) -> list[int]:
    """Output shape of one row, from a forward pass on two example rows."""
    try:
        with torch.inference_mode():
            output = module(probe)
    except Exception as exc:
        raise ModelLoadError(
            f"model '{card.name}': a forward pass on input shape {list(probe.shape[1:])} "
            f"failed: {exc}"
        ) from exc
    if not isinstance(output, torch.Tensor) or output.dim() < 2 or output.shape[0] != 2:
        raise ModelLoadError(f"model '{card.name}': forward must return a (B, ...) tensor")
    return list(output.shape[1:])
