"""What a model folder's loader hands over: network, dropout sites, split and a probe."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Literal

from torch import Tensor, nn

from app.engine.dropout import DropoutLayer, MaskKind
from app.engine.prefix import ModelSplit
from app.engine.recurrent import RecurrentDropout
from app.inputs.base import InputKind
from app.registry.card import ModelCard

SiteRole = Literal["attention", "hidden", "functional", "recurrent", "module"]


@dataclass(frozen=True)
class DropoutSite:
    """One dropout site of a model, sampled or not (the metadata's listing)."""

    name: str
    kind: str
    p: float
    role: SiteRole
    """``attention``: on attention probabilities; ``functional``: an ``F.dropout`` call in a
    forward; ``recurrent``: between two layers of a stacked LSTM/GRU/RNN; ``module``: a custom
    stochastic module run as it is under a seeded generator; ``hidden``: any other dropout
    module."""
    sampled: bool


@dataclass(frozen=True)
class Network:
    """A built model ready to wrap in a sampler."""

    card: ModelCard
    module: nn.Module
    layers: list[DropoutLayer]
    """The sampled dropout layers, indexed 0..k-1."""
    sites: list[DropoutSite]
    split: ModelSplit
    probe: Tensor
    """Example input rows (B >= 2, ...) from the input kind's domain (``input_kind.probe``),
    on the model's device: the output-shape probe, the split check and the audit run on it."""
    input_kind: InputKind
    warnings: list[str] = field(default_factory=list)
    site_owners: dict[str, str] = field(default_factory=dict)
    """Functional dropout sites -> the module whose forward makes the call ('' the model's)."""
    module_prefix: str = ""
    """What ``module``'s own names put before the site names (a wrapper's attribute)."""


def describe_sites(
    found: Sequence[DropoutLayer],
    sampled: Sequence[DropoutLayer],
    attention: Collection[str] = (),
) -> list[DropoutSite]:
    """Every found dropout layer as a site, marked sampled when it is among ``sampled``."""
    chosen = {layer.name for layer in sampled}
    return [
        DropoutSite(
            name=layer.name,
            kind=type(layer.module).__name__,
            p=layer.p,
            role=_role(layer, attention),
            sampled=layer.name in chosen,
        )
        for layer in found
    ]


def _role(layer: DropoutLayer, attention: Collection[str]) -> SiteRole:
    if layer.name in attention:
        return "attention"
    if isinstance(layer.module, RecurrentDropout):
        return "recurrent"
    if layer.mask_kind is MaskKind.MODULE:
        return "module"
    return "functional" if layer.name.startswith("functional:") else "hidden"
