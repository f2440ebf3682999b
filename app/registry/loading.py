"""Model folder -> ready-to-sample model: card, architecture, verified weights, sampler.

The loader is chosen by the card's architecture source, one row of :data:`LOADERS` each; every
loader hands back a :class:`~app.registry.network.Network` carrying its input kind, whose probe
rows the output check and the stochasticity audit run on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from app.engine.abstention import AbstentionRule
from app.engine.conformal import ConformalRule
from app.engine.dropout import require_active_dropout
from app.engine.predictor import Predictor, TaskSpec
from app.engine.sampler import MCSampler
from app.engine.scripted import ScriptedSampler
from app.errors import ModelLoadError
from app.registry.auditing import audit_network
from app.registry.card import ModelCard, read_card
from app.registry.hf_image import load_image_classifier
from app.registry.hf_text import load_text_classifier
from app.registry.monai_nets import load_monai
from app.registry.network import Network
from app.registry.served import LoadOptions, ServedModel
from app.registry.torch_loader import load_torch

__all__ = ["LOADERS", "load_model_folder"]

logger = logging.getLogger(__name__)

Loader = Callable[[ModelCard, Path, LoadOptions], Network]
LOADERS: dict[str, Loader] = {
    "bundled": load_torch,
    "file": load_torch,
    "torchscript": load_torch,
    "huggingface-text": load_text_classifier,
    "huggingface-image": load_image_classifier,
    "monai": load_monai,
}
"""Architecture source -> its loader (a new source: one loader and one row here)."""


def architecture_source(card: ModelCard) -> str:
    """The card's row of :data:`LOADERS`: ``bundled``, ``file``, ``torchscript``, ``monai``
    or ``huggingface-<input type>``."""
    arch = card.architecture
    if arch.huggingface is not None:
        return f"huggingface-{card.input.type}"
    return next(
        name
        for name in ("bundled", "file", "torchscript", "monai")
        if getattr(arch, name) is not None
    )


def load_model_folder(folder: Path, options: LoadOptions = LoadOptions()) -> ServedModel:
    """Load, verify and probe one model folder; raises ModelLoadError with the reason."""
    started = time.perf_counter()
    card = read_card(folder)
    loader = LOADERS.get(architecture_source(card))
    if loader is None:
        raise ModelLoadError(f"model '{card.name}': no loader for {architecture_source(card)}")
    network = loader(card, folder, options)
    card, module, layers = network.card, network.module, network.layers
    require_active_dropout(layers, card.name)
    sampler: MCSampler | ScriptedSampler
    rows, device, dtype = options.max_sample_rows, options.device, options.dtype
    rows = network.input_kind.chunk_rows(rows)
    if isinstance(module, torch.jit.ScriptModule):
        sampler = ScriptedSampler(module, layers, max_rows=rows, device=device, dtype=dtype)
    else:
        sampler = MCSampler(
            module, layers, max_rows=rows, device=device, dtype=dtype, split=network.split
        )
    spec = TaskSpec(
        task=card.task,
        threshold=card.multilabel.threshold if card.multilabel else 0.5,
        uncertainty_threshold=(
            card.segmentation.uncertainty_threshold if card.segmentation else 0.1
        ),
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
        input_kind=network.input_kind,
        dropout_sites=network.sites,
        audit=audit,
    )


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
