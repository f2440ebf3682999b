"""Dropout sites of a traced model: dropout modules and functional dropout calls.

``F.dropout(x, p, training=self.training)`` (or ``training=True``, the common MC-dropout idiom)
in a model's ``forward`` is not a module, so no hook reaches it. When the model can be traced
with ``torch.fx``, each such call is a graph node: it becomes a dropout site of its own (named
``functional:<node>``) that the compiled suffix samples with the run's seeded masks like a module.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from numbers import Real

from torch import fx, nn
from torch.nn import functional
from torch.nn.modules.dropout import _DropoutNd

from app.engine.dropout import DropoutLayer, MaskKind

FUNCTIONAL_PREFIX = "functional:"
_KEY = "mcdrop_dropout"

_FUNCTIONS: dict[Callable[..., object], tuple[type[nn.Module], MaskKind, bool]] = {
    functional.dropout: (nn.Dropout, MaskKind.ELEMENT, False),
    functional.dropout1d: (nn.Dropout1d, MaskKind.CHANNEL, False),
    functional.dropout2d: (nn.Dropout2d, MaskKind.CHANNEL, False),
    functional.dropout3d: (nn.Dropout3d, MaskKind.CHANNEL, False),
    functional.alpha_dropout: (nn.AlphaDropout, MaskKind.ELEMENT, True),
    functional.feature_alpha_dropout: (nn.FeatureAlphaDropout, MaskKind.CHANNEL, True),
}


@dataclass(frozen=True)
class TracedSites:
    """Dropout sites of a traced model, in graph (execution) order."""

    order: list[str]
    """Names of every dropout site reached: module names and ``functional:<node>`` names."""
    functional: list[DropoutLayer]
    """The functional calls as dropout layers (indices from ``first_index``), each with a
    stand-in module holding its p."""
    owners: dict[str, str] = field(default_factory=dict)
    """Functional site name -> the module whose forward makes the call ('' the model's own)."""


def dropout_key(node: fx.Node) -> str | None:
    """The dropout site a graph node applies (module name or functional name), or None."""
    tagged = node.meta.get(_KEY)
    if isinstance(tagged, str):
        return tagged
    if node.op == "call_module":
        return str(node.target)
    return None


def dropout_input(node: fx.Node) -> fx.Node:
    """The activation a dropout node (module call or functional call) reads."""
    value = node.args[0] if node.args else node.kwargs["input"]
    assert isinstance(value, fx.Node)
    return value


class _Tracer(fx.Tracer):
    """torch.fx's tracer, with every dropout module (subclasses of torch's dropout defined
    outside torch too) and every module named in ``leaves`` kept as one call, so each stays a
    dropout site."""

    def __init__(self, leaves: Collection[str]) -> None:
        super().__init__()
        self.leaves = set(leaves)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return (
            isinstance(m, _DropoutNd)
            or module_qualified_name in self.leaves
            or super().is_leaf_module(m, module_qualified_name)
        )


def symbolic_trace(model: nn.Module, leaves: Collection[str] = ()) -> fx.GraphModule:
    """``torch.fx.symbolic_trace`` with dropout modules (and ``leaves``) as leaves."""
    graph = _Tracer(leaves).trace(model)
    return fx.GraphModule(model, graph, type(model).__name__)


def trace_sites(model: nn.Module, module_names: set[str], first_index: int) -> TracedSites | None:
    """Trace ``model`` and list its dropout sites; None when it cannot be traced."""
    try:
        traced = symbolic_trace(model, module_names)
    except Exception:  # tracing raises many kinds of errors on dynamic models
        return None
    return sites_of(traced, module_names, first_index)


def sites_of(traced: fx.GraphModule, module_names: set[str], first_index: int) -> TracedSites:
    """Tag the graph's functional dropout nodes (``dropout_key`` then names them) and list every
    dropout site in graph order. A call whose p is not a constant number, or whose input does not
    depend on the model's input (DropConnect's dropout on a weight: no per-row activation to
    mask), is left untouched."""
    order: list[str] = []
    found: list[DropoutLayer] = []
    owners: dict[str, str] = {}
    batched: set[fx.Node] = set()
    for node in traced.graph.nodes:
        if node.op == "placeholder" or any(a in batched for a in node.all_input_nodes):
            batched.add(node)
        if node.op == "call_module" and str(node.target) in module_names:
            order.append(str(node.target))
            continue
        kind = _FUNCTIONS.get(node.target) if node.op == "call_function" else None
        p = _constant_p(node)
        source = node.args[0] if node.args else node.kwargs.get("input")
        if kind is None or p is None or source not in batched:
            continue
        module_type, mask_kind, alpha = kind
        name = f"{FUNCTIONAL_PREFIX}{node.name}"
        node.meta[_KEY] = name
        order.append(name)
        layer = DropoutLayer(first_index + len(found), name, module_type(p), mask_kind, alpha)
        found.append(layer)
        stack = node.meta.get("nn_module_stack") or {}
        owners[name] = str(list(stack.values())[-1][0]) if stack else ""
    return TracedSites(order, found, owners)


def _constant_p(node: fx.Node) -> float | None:
    p = node.args[1] if len(node.args) > 1 else node.kwargs.get("p", 0.5)
    if isinstance(p, bool) or not isinstance(p, Real) or not 0.0 <= float(p) <= 1.0:
        return None
    return float(p)
