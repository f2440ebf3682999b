"""Plain Python functions from torch.fx graphs, without ``nn.Module`` call overhead.

A traced ``GraphModule`` reaches every submodule through a chain of ``getattr`` calls and calls
it through ``nn.Module.__call__`` (hook dispatch): a few microseconds per layer, which for a
small model at batch 1 is a large share of a forward pass. :func:`compile_graph` generates the
same code with every submodule's bound ``forward`` and every attribute looked up once, so the
same tensor operations run in the same order and the outputs are bit-identical. Common torch
layers in eval mode (Linear, ConvNd, BatchNormNd with running statistics, ReLU, MaxPool, Flatten)
are lowered further to the functional call their ``forward`` ends in, with the module's own
arguments. A module with hooks keeps being called through ``__call__``, so its hooks still run.

Dropout sites named in ``dropout_calls`` (modules, and functional calls tagged by
:mod:`app.engine.functional`) become calls ``dropout.apply(index, x)`` on an extra first
argument: the sampler passes the object that applies the run's seeded masks. Functional dropout
calls not named there are the identity, as in eval mode.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any, Protocol

import torch
from torch import Tensor, fx, nn
from torch.nn import functional
from torch.nn.modules import module as module_globals

from app.engine.functional import FUNCTIONAL_PREFIX, dropout_input, dropout_key


class DropoutApplier(Protocol):
    """What a compiled suffix calls at each dropout: ``apply(layer_index, x) -> masked x``."""

    def apply(self, index: int, x: Tensor) -> Tensor: ...


def compile_graph(
    gm: fx.GraphModule, dropout_calls: Mapping[str, int] | None = None
) -> Callable[..., Any]:
    """A function computing ``gm``'s graph; with ``dropout_calls`` (module name -> dropout layer
    index) its first argument is a :class:`DropoutApplier`, followed by ``gm``'s inputs."""
    dropout_calls = dict(dropout_calls or {})
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    bound: dict[str, object] = {}
    dropout = graph.placeholder("dropout") if dropout_calls else None
    for node in gm.graph.nodes:
        target = str(node.target)
        key = dropout_key(node)
        if key is not None and key in dropout_calls:
            x = dropout_input(node)
            env[node] = graph.call_method("apply", (dropout, dropout_calls[key], env[x]))
            continue
        if key is not None and key.startswith(FUNCTIONAL_PREFIX):  # not sampled: eval's identity
            env[node] = env[dropout_input(node)]
            continue
        new = graph.node_copy(node, lambda n: env[n])
        if node.op in ("call_module", "get_attr"):
            name = _flat_name(target, bound)
            bound[name] = _callable(gm, target) if node.op == "call_module" else _attr(gm, target)
            new.target = name
        env[node] = new
    code = graph.python_code(root_module="self")
    namespace: dict[str, Any] = dict(code.globals)
    exec(compile(code.src, f"<mcdrop compiled {type(gm).__name__}>", "exec"), namespace)
    forward = namespace["forward"]
    owner = SimpleNamespace(**bound)

    def run(*args: Any) -> Any:
        return forward(owner, *args)

    return run


def _flat_name(target: str, taken: Mapping[str, object]) -> str:
    base = "m_" + re.sub(r"\W", "_", target)
    name, suffix = base, 1
    while name in taken:
        name, suffix = f"{base}_{suffix}", suffix + 1
    return name


def _callable(gm: fx.GraphModule, target: str) -> Callable[..., Any]:
    """The submodule's functional equivalent, its bound forward, or the module itself when
    hooks must run."""
    module = gm.get_submodule(target)
    if _has_hooks(module):
        return module
    lowered = lowered_forward(module)
    if lowered is not None:
        return lowered
    forward: Callable[..., Any] = module.forward
    return forward


_CONVOLUTIONS: dict[type[nn.Module], Callable[..., Tensor]] = {
    nn.Conv1d: torch.conv1d,
    nn.Conv2d: torch.conv2d,
    nn.Conv3d: torch.conv3d,
}
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_MAX_POOLS: dict[type[nn.Module], Callable[..., Tensor]] = {
    nn.MaxPool1d: torch.max_pool1d,
    nn.MaxPool2d: torch.max_pool2d,
    nn.MaxPool3d: torch.max_pool3d,
}


def lowered_forward(module: nn.Module) -> Callable[[Tensor], Tensor] | None:
    """The torch function call that ``module.forward`` makes in eval mode, arguments bound, for
    exact (not subclassed) torch layers; None when there is none to take. Input checks that
    ``forward`` makes are skipped: the model was probed with this input shape at load."""
    kind = type(module)
    if module.training:
        return None
    if isinstance(module, nn.Linear) and kind is nn.Linear:
        return _linear(module)
    if isinstance(module, nn.modules.conv._ConvNd) and kind in _CONVOLUTIONS:
        return _convolution(module) if module.padding_mode == "zeros" else None
    if isinstance(module, _BATCH_NORMS) and kind in _BATCH_NORMS:
        return _batch_norm(module)
    if isinstance(module, nn.ReLU) and kind is nn.ReLU and not module.inplace:
        return torch.relu
    if isinstance(module, nn.modules.pooling._MaxPoolNd) and kind in _MAX_POOLS:
        return None if module.return_indices else _max_pool(module)
    if isinstance(module, nn.Flatten) and kind is nn.Flatten:
        start, end = module.start_dim, module.end_dim
        return lambda x: x.flatten(start, end)
    return None


def _linear(module: nn.Linear) -> Callable[[Tensor], Tensor]:
    weight, bias = module.weight, module.bias
    return lambda x: functional.linear(x, weight, bias)


def _convolution(module: nn.modules.conv._ConvNd) -> Callable[[Tensor], Tensor]:
    conv = _CONVOLUTIONS[type(module)]
    weight, bias = module.weight, module.bias
    stride, padding, dilation, groups = (
        module.stride,
        module.padding,
        module.dilation,
        module.groups,
    )
    return lambda x: conv(x, weight, bias, stride, padding, dilation, groups)


def _batch_norm(module: nn.modules.batchnorm._BatchNorm) -> Callable[[Tensor], Tensor] | None:
    mean, var, eps = module.running_mean, module.running_var, module.eps
    if mean is None or var is None:
        return None  # batch statistics even in eval mode: keep the module's own logic
    weight, bias = module.weight, module.bias
    return lambda x: torch.batch_norm(
        x, weight, bias, mean, var, False, 0.0, eps, torch.backends.cudnn.enabled
    )


def _max_pool(module: nn.modules.pooling._MaxPoolNd) -> Callable[[Tensor], Tensor]:
    pool = _MAX_POOLS[type(module)]
    size, padding, dilation = module.kernel_size, module.padding, module.dilation
    stride = module.stride if module.stride is not None else []
    ceil = module.ceil_mode
    return lambda x: pool(x, size, stride, padding, dilation, ceil)


def _has_hooks(module: nn.Module) -> bool:
    own = (
        module._forward_hooks,
        module._forward_pre_hooks,
        module._backward_hooks,
        module._backward_pre_hooks,
    )
    shared = (
        module_globals._global_forward_hooks,
        module_globals._global_forward_pre_hooks,
        module_globals._global_backward_hooks,
        module_globals._global_backward_pre_hooks,
    )
    return any(len(hooks) > 0 for hooks in own + shared)


def _attr(gm: fx.GraphModule, target: str) -> object:
    owner, _, name = target.rpartition(".")
    return getattr(gm.get_submodule(owner) if owner else gm, name)
