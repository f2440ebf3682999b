"""Bundled, Python-file and TorchScript models: build the architecture, load verified weights,
wrap a ``lengths`` model, and find its dropout sites on the input kind's probe rows."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from app.architectures import build_bundled
from app.engine.audio import require_audio
from app.engine.images import require_pillow
from app.engine.medical import ScanDecoder, require_medical
from app.errors import ModelLoadError
from app.inputs.audio import AudioKind
from app.inputs.audio_features import card_features
from app.inputs.base import InputKind
from app.inputs.image import ImageKind
from app.inputs.sequence import take_lengths
from app.inputs.tensor import TensorKind
from app.registry.card import ModelCard
from app.registry.card_inputs import AudioInputSpec, ImageInputSpec
from app.registry.network import Network
from app.registry.served import LoadOptions
from app.registry.sites import torch_network

logger = logging.getLogger(__name__)

PROBE_ROWS = 3


def load_torch(card: ModelCard, folder: Path, options: LoadOptions) -> Network:
    """A bundled, Python-file or TorchScript model with its dropout sites and split."""
    kind = torch_input_kind(card, options)
    module = _build_module(card, folder)
    if card.weights.file is not None:
        load_weights(module, card, folder)
    described = kind.describe()
    if described.lengths:
        module = take_lengths(module, described.shape, card.name)
    module.eval().to(options.device, options.dtype)
    probe = kind.probe(PROBE_ROWS)
    probe = probe.to(options.device, options.dtype) if probe.is_floating_point() else probe
    return torch_network(card, module, probe, kind)


def torch_input_kind(card: ModelCard, options: LoadOptions) -> InputKind:
    """The card's tensor, image or audio input kind; ModelLoadError naming the extra without
    Pillow (images) or soundfile and soxr (audio)."""
    if isinstance(card.input, AudioInputSpec):
        try:
            require_audio()
        except ModelLoadError as exc:
            raise ModelLoadError(f"model '{card.name}': {exc.message}") from None
        return AudioKind(card.input, card_features(card.input))
    if isinstance(card.input, ImageInputSpec):
        try:
            require_pillow()
        except ModelLoadError as exc:
            raise ModelLoadError(f"model '{card.name}': {exc.message}") from None
        return ImageKind(
            card.input.preprocessing(),
            card.input.shape,
            options.value_limit,
            options.max_image_pixels,
            probe_size=card.input.size,
            scans=_scan_decoder(card),
        )
    return TensorKind(card.input, options.value_limit, card.value_range, card.feature_names)


def _scan_decoder(card: ModelCard) -> ScanDecoder | None:
    assert isinstance(card.input, ImageInputSpec)
    decoder = card.input.scan_decoder()
    if decoder is not None:
        try:
            require_medical(decoder.formats)
        except ModelLoadError as exc:
            raise ModelLoadError(f"model '{card.name}': {exc.message}") from None
    return decoder


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


def load_weights(module: nn.Module, card: ModelCard, folder: Path) -> None:
    """The card's weights file, its sha256 checked, into ``module`` (strict)."""
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
