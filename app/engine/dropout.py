"""Finding the dropout layers of a model and applying seeded MC dropout masks to them.

The model always stays in ``eval()`` (BatchNorm keeps its running statistics). During a sampling
run :class:`app.engine.sampler.MCSampler` applies seeded masks at each dropout site: the compiled
fx suffix calls the run's mask applier in place of the dropout module, and only a model that
cannot be split gets forward hooks that replace the module's eval-mode identity output. The masks
come from :mod:`app.engine.masks`, so they depend on the request's seed and the sample index
only, never on the chunking or on other rows in the batch. TorchScript models cannot take
either; :class:`app.engine.scripted.ScriptedSampler` switches their dropout modules on instead.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor, nn
from torch.nn.modules.dropout import _DropoutNd

from app.errors import ModelLoadError

logger = logging.getLogger(__name__)

_SELU_ALPHA_PRIME = 1.7580993408473766
FUNCTIONAL_DROPOUT_CALL = re.compile(r"\b(?:F|functional)\.(?:feature_alpha_|alpha_)?dropout\w*\(")


class MaskKind(Enum):
    """How a dropout layer draws its mask."""

    ELEMENT = "element"
    """One Bernoulli per feature element (nn.Dropout)."""
    CHANNEL = "channel"
    """One Bernoulli per channel, shared over spatial positions (Dropout1d/2d/3d)."""
    MODULE = "module"
    """A custom stochastic module run as it is, in training mode under a seeded generator
    (:mod:`app.engine.module_sites`)."""


@dataclass(frozen=True)
class DropoutLayer:
    """A dropout module found in a model, in forward-registration order."""

    index: int
    name: str
    module: nn.Module
    mask_kind: MaskKind
    alpha: bool
    shared: tuple[int, ...] = ()
    """Dimensions of one row's activation (0 = the first after the batch) that share one mask
    value (a time-locked mask); empty for torch's own semantics."""

    @property
    def p(self) -> float:
        p = getattr(self.module, "p", 0.0)
        return float(p) if isinstance(p, int | float) else 0.0

    @property
    def active(self) -> bool:
        """Whether sampling it changes anything: p > 0, or a stochastic module run as it is."""
        return self.mask_kind is MaskKind.MODULE or self.p > 0.0


_CHANNEL_DROPOUTS = {"Dropout1d", "Dropout2d", "Dropout3d", "FeatureAlphaDropout"}
_ALPHA_DROPOUTS = {"AlphaDropout", "FeatureAlphaDropout"}
_DROPOUT_NAMES = {"Dropout"} | _CHANNEL_DROPOUTS | _ALPHA_DROPOUTS


def find_dropout_layers(model: nn.Module) -> list[DropoutLayer]:
    """Every ``_DropoutNd`` subclass in ``model`` (AlphaDropout and FeatureAlphaDropout too).

    Inside a TorchScript module, submodules are recognised by their original class name.
    """
    layers: list[DropoutLayer] = []
    for name, module in model.named_modules():
        if isinstance(module, _DropoutNd):
            kind_name = _nearest_torch_dropout(module)
        elif isinstance(module, torch.jit.ScriptModule):
            kind_name = str(getattr(module, "original_name", ""))
            if kind_name not in _DROPOUT_NAMES:
                continue
        else:
            continue
        kind = MaskKind.CHANNEL if kind_name in _CHANNEL_DROPOUTS else MaskKind.ELEMENT
        layers.append(DropoutLayer(len(layers), name, module, kind, kind_name in _ALPHA_DROPOUTS))
    return layers


_TORCH_DROPOUTS = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)


def _nearest_torch_dropout(module: nn.Module) -> str:
    """Class name of the torch dropout a custom ``_DropoutNd`` subclass derives from."""
    for cls in type(module).__mro__:
        if cls in _TORCH_DROPOUTS:
            return cls.__name__
    return "Dropout"


def require_active_dropout(layers: list[DropoutLayer], model_name: str) -> None:
    """Refuse a model that cannot produce MC samples: no dropout module, dropout frozen by
    ``torch.jit.trace``, or every p == 0."""
    if not layers:
        raise ModelLoadError(
            f"model '{model_name}' has no dropout module (torch.nn.Dropout, Dropout1d/2d/3d, "
            "AlphaDropout, FeatureAlphaDropout): MC dropout needs at least one to sample"
        )
    traced = [layer.name for layer in layers if is_traced_dropout(layer.module)]
    if traced:
        raise ModelLoadError(
            f"model '{model_name}' was traced with torch.jit.trace: dropout is fixed in the "
            f"graph ({', '.join(traced)} ignore the training switch); export with "
            "torch.jit.script"
        )
    if not any(layer.active for layer in layers):
        names = ", ".join(layer.name for layer in layers)
        raise ModelLoadError(
            f"model '{model_name}' has dropout modules ({names}) but every one has p = 0, "
            "so all MC samples would be identical"
        )


def is_traced_dropout(module: nn.Module) -> bool:
    """True for a TorchScript dropout submodule recorded by ``torch.jit.trace``: its code calls
    dropout with the training flag baked in as a constant instead of reading ``self.training``
    (so switching it on or off changes nothing)."""
    if not isinstance(module, torch.jit.ScriptModule):
        return False
    try:
        code = str(module.code)
    except RuntimeError:  # no forward method to show
        return False
    return "dropout" in code and "training" not in code


def warn_functional_dropout(model: nn.Module, model_name: str) -> list[str]:
    """Log a warning for functional dropout calls that module switches cannot reach.

    Returns the qualified class names whose source calls ``F.dropout`` (or a variant).
    """
    offenders = []
    for module in model.modules():
        cls = type(module)
        if cls.__module__.startswith("torch."):
            continue
        try:
            source = inspect.getsource(cls.forward)
        except (OSError, TypeError):
            continue
        if FUNCTIONAL_DROPOUT_CALL.search(source):
            offenders.append(f"{cls.__module__}.{cls.__qualname__}")
    for qualname in sorted(set(offenders)):
        logger.warning(
            "model '%s': %s.forward calls functional dropout (F.dropout); mcdrop keeps the "
            "model in eval mode, so that call stays off during sampling. Use an nn.Dropout "
            "module instead.",
            model_name,
            qualname,
        )
    return sorted(set(offenders))


def mask_shape(
    kind: MaskKind, feature_shape: torch.Size, shared: tuple[int, ...] = ()
) -> tuple[int, ...]:
    """Shape of one sample's mask for activations of ``feature_shape`` (one row, no batch dim);
    the ``shared`` dimensions (of ``feature_shape``) get size 1: one mask value over them."""
    if kind is MaskKind.CHANNEL and len(feature_shape) >= 2:
        shape = (feature_shape[0],) + (1,) * (len(feature_shape) - 1)
    else:
        shape = tuple(feature_shape)
    beyond = [d + 1 for d in shared if d >= len(shape)]
    if beyond:
        raise ValueError(
            f"mask shared over dimension(s) {beyond} of a ({len(shape) + 1}-dimensional) "
            f"activation of row shape {list(feature_shape)}"
        )
    return tuple(1 if d in shared else size for d, size in enumerate(shape))


def apply_mask(x: Tensor, keep: Tensor, p: float, alpha: bool) -> Tensor:
    """Dropout with a given keep mask.

    x: (n, B, *F) activations of n samples of B rows; keep: (n, 1, *M) with 1 = keep, where M
    broadcasts to F. Standard dropout gives x * keep / (1 - p); alpha dropout keeps SELU's
    self-normalisation: a * (x * keep + α'(keep - 1)) + α' a p with a = ((1-p)(1 + p α'²))^-½.
    """
    keep = keep.to(x.dtype)
    if p >= 1.0:
        return x * 0.0
    if not alpha:
        return x * keep * (1.0 / (1.0 - p))
    a = 1.0 / math.sqrt((_SELU_ALPHA_PRIME**2 * p + 1.0) * (1.0 - p))
    return x * (keep * a) + (keep - 1.0) * (_SELU_ALPHA_PRIME * a) + _SELU_ALPHA_PRIME * a * p
