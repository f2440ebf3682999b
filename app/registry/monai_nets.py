"""MONAI segmentation networks (``architecture: {monai: UNet | BasicUNet, kwargs: {...}}``),
built from MONAI's own classes with the card's kwargs and verified weights, then served like a
Python-file model (fx split, seeded masks). MONAI comes with the ``mcdrop[medical]`` extra.

Their dropout is ``nn.Dropout`` inside each convolution block (``dropout=`` in the kwargs). With
``mc_dropout: head`` only the decoder's blocks are sampled (BasicUNet's ``upcat_*``; UNet's up
path, the third member of each level), so the encoder runs once per image and the decoder per
pass (BasicUNet, which torch.fx cannot trace whole, by :func:`basic_unet_split`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from app.engine.compiled import DropoutApplier
from app.engine.dropout import find_dropout_layers
from app.engine.prefix import ModelSplit
from app.errors import ModelLoadError
from app.registry.card import ModelCard
from app.registry.network import Network
from app.registry.served import LoadOptions
from app.registry.sites import torch_network
from app.registry.torch_loader import PROBE_ROWS, load_weights, torch_input_kind

MEDICAL_EXTRA = "pip install 'mcdrop[medical]' (with the CPU torch already installed)"
_UNET_UP = re.compile(r"(?:^|\.)(?:model|submodule)\.2(?:\.|$)")
"""MONAI UNet nests each level as Sequential(down, SkipConnection(next level), up)."""

DECODER: dict[str, Callable[[str], bool]] = {
    "UNet": lambda name: _UNET_UP.search(name) is not None,
    "BasicUNet": lambda name: name.startswith("upcat_"),
}
"""Supported MONAI networks -> which dropout site names are the decoder's."""


def _monai() -> Any:
    try:
        import monai.networks.nets as nets
    except ImportError:
        raise ModelLoadError(f"MONAI networks need MONAI: {MEDICAL_EXTRA}") from None
    return nets


def build_monai(card: ModelCard, folder: Path) -> nn.Module:
    """The card's MONAI network (one of :data:`DECODER`) built with its kwargs."""
    name = card.architecture.monai
    if name not in DECODER:
        raise ModelLoadError(
            f"model '{card.name}': architecture.monai '{name}' is not supported "
            f"({', '.join(DECODER)})"
        )
    try:
        module: nn.Module = getattr(_monai(), name)(**card.architecture.kwargs)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"{folder}: cannot build MONAI {name}: {exc}") from exc
    return module


def decoder_sites(name: str, module: nn.Module) -> set[str]:
    """The dropout sites of a MONAI network's decoder."""
    return {layer.name for layer in find_dropout_layers(module) if DECODER[name](layer.name)}


def load_monai(card: ModelCard, folder: Path, options: LoadOptions) -> Network:
    """A MONAI network with its weights, dropout sites (the decoder's as ``head``) and split."""
    kind = torch_input_kind(card, options)
    module = build_monai(card, folder)
    if card.weights.file is not None:
        load_weights(module, card, folder)
    module.eval().to(options.device, options.dtype)
    probe = kind.probe(PROBE_ROWS).to(options.device, options.dtype)
    name = card.architecture.monai
    assert name is not None
    head = decoder_sites(name, module)
    network = torch_network(card, module, probe, kind, head=head)
    decoder_only = all(layer.name in head for layer in network.layers)
    if name == "BasicUNet" and decoder_only and network.split.prefix_fraction == 0.0:
        network = replace(network, split=basic_unet_split(module))
    return network


def basic_unet_split(net: nn.Module) -> ModelSplit:
    """BasicUNet's encoder once per image (prefix: its five feature maps), the decoder per
    pass (suffix, its dropout modules hooked by the sampler). torch.fx cannot trace BasicUNet
    whole: ``UpCat`` asks ``torch.jit.isinstance`` of its skip input, which a tracing proxy
    fails, so the traced graph would drop the skip connections."""
    m: Any = net

    def prefix(x: Tensor) -> tuple[Tensor, ...]:
        x0 = m.conv_0(x)
        x1 = m.down_1(x0)
        x2 = m.down_2(x1)
        x3 = m.down_3(x2)
        return x0, x1, x2, x3, m.down_4(x3)

    def suffix(dropout: DropoutApplier, *values: Tensor) -> Tensor:
        x0, x1, x2, x3, x4 = values
        u = m.upcat_1(m.upcat_2(m.upcat_3(m.upcat_4(x4, x3), x2), x1), x0)
        logits: Tensor = m.final_conv(u)
        return logits

    encoder = ("conv_0", "down_1", "down_2", "down_3", "down_4")
    owned = sum(p.numel() for part in encoder for p in getattr(m, part).parameters())
    share = owned / max(sum(p.numel() for p in net.parameters()), 1)
    reason = "MONAI BasicUNet split: the encoder runs once per image, the decoder per sample"
    return ModelSplit(prefix, suffix, round(share, 4), reason)
