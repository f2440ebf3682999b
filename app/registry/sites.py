"""The dropout sites of a bundled, Python-file or TorchScript network: found (modules, recurrent
stacks unrolled, functional calls in the fx graph, the card's stochastic modules), chosen by the
card's ``mc_dropout`` and split into a deterministic prefix and a sampled suffix."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

import torch
from torch import Tensor, nn

from app.engine.dropout import (
    DropoutLayer,
    MaskKind,
    find_dropout_layers,
    require_active_dropout,
    warn_functional_dropout,
)
from app.engine.functional import FUNCTIONAL_PREFIX, trace_sites
from app.engine.prefix import fx_split, whole_model_split
from app.engine.recurrent import unroll_recurrent_dropout
from app.engine.selection import select_dropout
from app.errors import ModelLoadError
from app.inputs.base import InputKind
from app.registry.auditing import refuse_without_sampled_sites
from app.registry.card import ModelCard
from app.registry.network import Network, describe_sites


def torch_network(
    card: ModelCard,
    module: nn.Module,
    probe: Tensor,
    kind: InputKind,
    head: Collection[str] | None = None,
) -> Network:
    """The network of a built model in eval mode with its weights, probed on ``probe`` rows;
    ``head`` the sites ``mc_dropout: head`` samples (None: the last dropout site)."""
    if isinstance(module, torch.jit.ScriptModule):
        return _scripted_network(card, module, probe, kind)
    unroll_recurrent_dropout(module)
    modules = find_dropout_layers(module)
    modules += module_sites(module, card, len(modules), {layer.name for layer in modules})
    traced = trace_sites(module, {layer.name for layer in modules}, len(modules))
    found = modules + (traced.functional if traced is not None else [])
    if head is None:
        head = set(traced.order[-1:]) if traced is not None else _last(modules)
    reached = [x for x in found if traced is None or x.name in traced.order]
    layers = select_dropout(reached, card.mc_dropout, head, card.name, card.dropout_share)
    if not any(layer.active for layer in layers):
        refuse_without_sampled_sites(module, probe, card.name)
    require_active_dropout(layers, card.name)
    split = fx_split(module, layers, probe)
    # Untraceable code is named by the audit; traced calls need the split's compiled suffix.
    dropped = [layer.name for layer in layers if layer.name.startswith(FUNCTIONAL_PREFIX)]
    if not split.applies_dropout:  # hooks reach modules only
        layers = _modules_only(layers)
    sites = describe_sites(found, layers)
    owners = traced.owners if traced is not None else {}
    warnings = _unreached(dropped if not split.applies_dropout else [])
    return Network(card, module, layers, sites, split, probe, kind, warnings, site_owners=owners)


def _scripted_network(
    card: ModelCard, module: nn.Module, probe: Tensor, kind: InputKind
) -> Network:
    """TorchScript: dropout modules only, switched on in a run; no split, no shared masks, no
    stochastic modules run as they are."""
    if card.dropout_share or card.sampled_modules:
        raise ModelLoadError(
            f"model '{card.name}': mc_dropout.share and mc_dropout.modules need mcdrop's own "
            "sampling; a TorchScript model's dropout draws torch's (export the model as a "
            "Python file instead)"
        )
    modules = find_dropout_layers(module)
    layers = select_dropout(modules, card.mc_dropout, _last(modules), card.name)
    split = whole_model_split(module, reason="TorchScript model: no prefix split")
    unreached = warn_functional_dropout(module, card.name)
    sites = describe_sites(modules, layers)
    return Network(card, module, layers, sites, split, probe, kind, _unreached(unreached))


def module_sites(
    module: nn.Module, card: ModelCard, first: int, dropout: set[str]
) -> list[DropoutLayer]:
    """The card's ``mc_dropout.modules`` as sites run as they are; ModelLoadError for a name
    that is no module or a module holding dropout sites."""
    names = {name for name, _ in module.named_modules()}
    sites = []
    for index, name in enumerate(card.sampled_modules):
        if name not in names or not name:
            raise ModelLoadError(f"model '{card.name}': mc_dropout.modules: no module '{name}'")
        inner = sorted(d for d in dropout if d.startswith(f"{name}."))
        if inner:
            raise ModelLoadError(
                f"model '{card.name}': mc_dropout.modules: '{name}' holds dropout sites "
                f"({', '.join(inner)}); name the innermost stochastic module"
            )
        target = module.get_submodule(name)
        sites.append(DropoutLayer(first + index, name, target, MaskKind.MODULE, False))
    return sites


def _modules_only(layers: list[DropoutLayer]) -> list[DropoutLayer]:
    kept = [layer for layer in layers if not layer.name.startswith(FUNCTIONAL_PREFIX)]
    return [replace(layer, index=index) for index, layer in enumerate(kept)]


def _last(layers: list[DropoutLayer]) -> set[str]:
    """The head of a model that cannot be traced: its last dropout module registered."""
    return {layers[-1].name} if layers else set()


def _unreached(names: list[str]) -> list[str]:
    return [
        f"functional dropout in {name} is not sampled: mcdrop keeps the model in eval mode and "
        "reaches such a call only in a model torch.fx can split, so that dropout never samples "
        "(use an nn.Dropout module)"
        for name in names
    ]
