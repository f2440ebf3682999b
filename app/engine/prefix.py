"""Splitting a model into a deterministic prefix and a stochastic suffix.

Every value of the forward pass that does not depend on a dropout output is the same on every MC
pass, so it only needs computing once per input row. :func:`fx_split` traces the model with
``torch.fx``, puts each graph node that depends on the input but on no dropout module into the
prefix, and every node downstream of a dropout into the suffix. The prefix's values that the
suffix reads (the activation entering the first dropout, and any skip connection crossing the
split) are returned by the prefix and repeated N times by the sampler. Constant nodes (weights,
shapes computed from parameters) are re-created in the suffix rather than passed across.

Both halves are compiled to plain functions (:mod:`app.engine.compiled`) and the suffix calls
the sampler's mask applier at each dropout instead of the module, so no hook runs per pass.

A model that cannot be traced, or whose crossing values are not per-row tensors, falls back to
:func:`whole_model_split` with the reason logged and shown in the model's metadata.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from app.engine.compiled import DropoutApplier, compile_graph
from app.engine.dropout import DropoutLayer
from app.engine.functional import dropout_key, sites_of, symbolic_trace

logger = logging.getLogger(__name__)

Prefix = Callable[[Tensor], tuple[Tensor, ...]]
Suffix = Callable[..., Tensor]


@dataclass(frozen=True)
class ModelSplit:
    """prefix(x) -> values crossing the split, each (B, ...);
    suffix(dropout, *values) -> output."""

    prefix: Prefix
    suffix: Suffix
    prefix_fraction: float
    """Share of the model's parameters used by prefix operations (0 = no prefix)."""
    reason: str
    """How the split was made, or why there is none (shown in metadata and logs)."""
    applies_dropout: bool = False
    """True: the suffix calls ``dropout.apply`` itself. False: it runs the model's dropout
    modules, and the sampler must hook them."""
    dropout_inputs: frozenset[int] = frozenset()
    """Positions of crossing values that only dropouts read: the sampler may pass them unfolded
    (as :class:`Unfolded`) and let the dropout repeat them while masking."""
    feature_index: int | None = None
    """Position of the crossing value entering the first dropout (the deterministic features
    the shift score models, :mod:`app.engine.shift`); None when there is no prefix."""
    row_bytes: int = 0
    """Bytes per input row of the suffix's largest activation at the probe (0: unknown); with
    ``probe_values`` (the probe row's size) it sizes forward calls (:mod:`app.engine.row_calls`)."""
    probe_values: int = 0


@dataclass(frozen=True)
class Unfolded:
    """Stands for crossing value ``index`` of every job, not yet repeated over samples."""

    index: int


def whole_model_split(model: nn.Module, reason: str = "no prefix split") -> ModelSplit:
    """No prefix: every pass runs the whole model (its dropout modules need the sampler's hooks)."""

    def prefix(x: Tensor) -> tuple[Tensor, ...]:
        return (x,)

    def suffix(dropout: DropoutApplier, *values: Tensor) -> Tensor:
        output: Tensor = model(*values)
        return output

    return ModelSplit(prefix, suffix, 0.0, reason)


class SplitError(Exception):
    """The model cannot be split; the message says why."""


def fx_split(model: nn.Module, dropout_layers: Iterable[DropoutLayer], probe: Tensor) -> ModelSplit:
    """Trace ``model`` and split it before its dropouts, or fall back to no split.

    ``probe`` is an example input (B >= 2, ...) used to check that the split model computes the
    same output as the model and that every crossing value is a per-row tensor.
    """
    try:
        return _fx_split(model, {layer.name: layer.index for layer in dropout_layers}, probe)
    except SplitError as exc:
        reason = f"no prefix split: {exc}"
    except Exception as exc:  # tracing raises many kinds of errors on dynamic models
        reason = (
            f"no prefix split: torch.fx could not trace the model ({type(exc).__name__}: {exc})"
        )
    logger.info("%s; falling back to plain folding", reason)
    return whole_model_split(model, reason)


def _fx_split(model: nn.Module, dropout_names: dict[str, int], probe: Tensor) -> ModelSplit:
    traced = symbolic_trace(model, dropout_names)
    sites_of(traced, set(), 0)  # tags functional dropout calls, which dropout_key then names
    nodes = list(traced.graph.nodes)
    stochastic = _downstream_of(nodes, lambda n: dropout_key(n) in dropout_names)
    if not stochastic:
        raise SplitError("no dropout module is reached in the traced graph")
    batched = _downstream_of(nodes, lambda n: n.op == "placeholder")
    prefix_nodes = [n for n in nodes if n in batched and n not in stochastic and n.op != "output"]
    output = nodes[-1]
    if output not in stochastic:
        raise SplitError("the output does not depend on any dropout")
    ShapeProp(traced).propagate(probe)
    suffix_side = _pull_non_tensors(nodes, stochastic, prefix_nodes)
    prefix_nodes = [n for n in prefix_nodes if n not in suffix_side]
    crossing = [n for n in prefix_nodes if any(user in suffix_side for user in n.users)]
    if sum(1 for n in nodes if n.op == "placeholder") != 1:
        raise SplitError("the model's forward takes more than one input")
    prefix = compile_graph(_subgraph(traced, nodes, set(prefix_nodes), batched, [], crossing))
    suffix_graph = _subgraph(traced, nodes, suffix_side, batched, crossing, None)
    suffix = compile_graph(suffix_graph, dropout_names)
    _check_split(compile_graph(traced, dropout_names), prefix, suffix, probe)
    fraction = _parameter_share(traced, prefix_nodes)
    first_node = next(n for n in nodes if n in stochastic and dropout_key(n) is not None)
    first = dropout_key(first_node)
    reason = (
        f"torch.fx split: {len(prefix_nodes)} ops run once per row, "
        f"{sum(1 for n in nodes if n in stochastic) - 1} ops per sample "
        f"(from the first dropout: {first}); {len(crossing)} value(s) cross"
    )
    dropout_inputs = frozenset(
        index
        for index, node in enumerate(crossing)
        if all(dropout_key(user) in dropout_names for user in node.users if user in suffix_side)
    )
    return ModelSplit(
        prefix,
        suffix,
        fraction,
        reason,
        applies_dropout=True,
        dropout_inputs=dropout_inputs,
        feature_index=_first_dropout_input(first_node, crossing),
        row_bytes=max((_row_bytes(n) for n in nodes if n in stochastic), default=0),
        probe_values=probe[0].numel(),
    )


def _row_bytes(node: fx.Node) -> int:
    """Bytes per row of the node's tensor value at the probe (0 for a non-tensor or a tuple)."""
    meta = node.meta.get("tensor_meta")
    shape, dtype = getattr(meta, "shape", None), getattr(meta, "dtype", None)
    if shape is None or dtype is None or len(shape) == 0 or shape[0] == 0:
        return 0
    element = torch.empty((), dtype=dtype).element_size()
    return int(math.prod(shape[1:]) * element)


def _first_dropout_input(first: fx.Node, crossing: list[fx.Node]) -> int | None:
    """Index in ``crossing`` of the first dropout's input, None when it is not a crossing value
    (the first dropout reads a value computed after another stochastic op)."""
    inputs = first.all_input_nodes
    return next((i for i, node in enumerate(crossing) if inputs and node is inputs[0]), None)


def _pull_non_tensors(
    nodes: list[fx.Node], stochastic: set[fx.Node], prefix_nodes: list[fx.Node]
) -> set[fx.Node]:
    """The suffix's nodes: the stochastic ones plus prefix nodes that compute non-tensors (sizes,
    shapes) read by the suffix, which are recomputed there from the folded rows instead of
    crossing the split (``x.view(x.size(0), -1)`` needs N*B, not B)."""
    suffix = set(stochastic)
    in_prefix = set(prefix_nodes)
    for node in reversed(nodes):
        computes_non_tensor = node.op != "placeholder" and "tensor_meta" not in node.meta
        if node in in_prefix and computes_non_tensor and any(u in suffix for u in node.users):
            suffix.add(node)
    return suffix


def _downstream_of(nodes: Sequence[fx.Node], seed: Callable[[fx.Node], bool]) -> set[fx.Node]:
    """Nodes for which ``seed`` holds, and every node that reads one of them."""
    found: set[fx.Node] = set()
    for node in nodes:  # graph order is topological
        if seed(node) or any(arg in found for arg in node.all_input_nodes):
            found.add(node)
    return found


def _subgraph(
    traced: fx.GraphModule,
    nodes: list[fx.Node],
    members: set[fx.Node],
    batched: set[fx.Node],
    inputs: list[fx.Node],
    outputs: list[fx.Node] | None,
) -> fx.GraphModule:
    """A module computing ``members`` (plus the constants they read) from ``inputs``, which
    become its placeholders, and returning ``outputs`` (None: the members hold the graph's own
    output node)."""
    keep = members | _constant_inputs(nodes, members, batched)
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for index, node in enumerate(inputs):
        env[node] = graph.placeholder(f"crossing_{index}")
    for node in nodes:
        if node in keep and node not in env:
            env[node] = graph.node_copy(node, lambda n: env[n])
    if outputs is not None:
        graph.output(tuple(env[n] for n in outputs))
    return fx.GraphModule(traced, graph)


def _constant_inputs(
    nodes: list[fx.Node], group: set[fx.Node], batched: set[fx.Node]
) -> set[fx.Node]:
    """Nodes independent of the input (parameters, constants) that ``group`` reads, transitively."""
    needed: set[fx.Node] = set()
    for node in reversed(nodes):
        if node in group or node in needed:
            needed.update(arg for arg in node.all_input_nodes if arg not in batched)
    return needed


class _NoDropout:
    """The applier of eval mode: dropout is the identity."""

    @staticmethod
    def apply(index: int, x: Tensor) -> Tensor:
        return x


def _check_split(whole: Suffix, prefix: Prefix, suffix: Suffix, probe: Tensor) -> None:
    """The split computes what the whole traced graph computes, dropout off (compiled too, so
    that functional ``training=True`` dropout is off in both)."""
    with torch.inference_mode():
        for rows in (2, 3):
            x = probe.repeat(rows, *[1] * (probe.dim() - 1))[:rows]
            values: Any = prefix(x)
            for value in values:
                if not isinstance(value, Tensor) or value.dim() == 0 or value.shape[0] != rows:
                    raise SplitError("a value crossing the split is not a per-row tensor")
            expected = whole(_NoDropout(), x)
            actual = suffix(_NoDropout(), *values)
            if not isinstance(actual, Tensor) or not torch.allclose(actual, expected, atol=1e-5):
                raise SplitError("the split model does not reproduce the model's output")


def _parameter_share(traced: fx.GraphModule, prefix_nodes: list[fx.Node]) -> float:
    total = sum(p.numel() for p in traced.parameters())
    if total == 0:
        return 0.0
    in_prefix = 0
    for node in prefix_nodes:
        if node.op == "call_module":
            in_prefix += sum(p.numel() for p in traced.get_submodule(str(node.target)).parameters())
    return round(in_prefix / total, 4)
