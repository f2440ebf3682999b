"""The stochasticity audit: every source of randomness in a model is sampled by mcdrop, or named.

mcdrop keeps a model in eval mode and samples the dropout sites it found (modules, functional
dropout in traced code, recurrent inter-layer dropout). Anything else random escapes it: a
hand-written ``LockedDropout`` (``if not self.training: return x``), DropConnect, a noise layer,
stochastic depth, ``nn.MultiheadAttention``'s attention dropout, dropout in code torch.fx cannot
trace. On the input kind's probe example the audit looks for them three ways:

1. **Random in eval mode**: two eval forwards under different global seeds differ. Forward hooks
   then name the modules whose output changed while their inputs did not (innermost first).
2. **Random in training mode**: each module whose ``forward`` reads ``training`` (normalization
   layers excepted: BatchNorm's running statistics must not move) is switched alone to training
   mode; if two seeds then give different outputs, it is a source of randomness. Dropout modules
   mcdrop found, and the modules owning the functional dropout it samples, are its own business.
3. **Variance**: the model's own torch MC dropout (every module in training mode except
   normalization layers and the sites left unsampled on purpose) against mcdrop's passes: a
   reference variance above mcdrop's by more than ``Z`` standard errors means randomness is
   missing from the answers, whoever is responsible.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.dropout import _DropoutNd
from torch.utils.hooks import RemovableHandle

from app.engine.dropout import FUNCTIONAL_DROPOUT_CALL
from app.engine.sampling import Sampler
from app.engine.scripted import GLOBAL_RNG_LOCK

Z = 5.0
"""Standard errors by which the reference's variance must exceed mcdrop's to count."""
AUDIT_PASSES = 48
"""Passes of each side of the variance comparison (one forward call per reference pass)."""
VARY_RUNS = 8
"""Forward calls, under different seeds, that must all agree for a model to count as fixed."""
RANDOM_IN_TRAINING = "random in training mode"
RANDOM_IN_EVAL = "draws random numbers in eval mode"


class SampleRunError(Exception):
    """mcdrop's own sample run on the probe rows failed: the model cannot be served."""


@dataclass(frozen=True)
class Finding:
    """A module that is a source of randomness mcdrop does not sample."""

    name: str
    """Module path in the model ('' for the model itself)."""
    kind: str
    """Its class name."""
    reason: str
    """``RANDOM_IN_TRAINING`` or ``RANDOM_IN_EVAL``."""
    calls_dropout: bool = False
    """Its forward calls functional dropout (``F.dropout`` and kin) that mcdrop did not reach."""
    scripted: bool = False
    """A TorchScript submodule (``kind`` is its original class name)."""

    @property
    def label(self) -> str:
        """``'name' (Kind)``, the model itself as ``the model's own forward (Kind)``."""
        where = f"module '{self.name}'" if self.name else "the model's own forward"
        return f"{where} ({self.kind})"


@dataclass(frozen=True)
class VarianceGap:
    """Mean per-element variance of two sets of passes over the same rows, and how many
    standard errors the reference's exceeds the sampled one's."""

    reference: float
    sampled: float
    z: float

    @property
    def excess(self) -> bool:
        return self.z > Z


@dataclass(frozen=True)
class AuditReport:
    """What the audit found on the probe example."""

    findings: list[Finding] = field(default_factory=list)
    gap: VarianceGap | None = None
    passes: int = 0
    seconds: float = 0.0
    note: str | None = None
    """Why a part of the audit could not run (the training-mode reference failed, say)."""


def variance_gap(reference: Tensor, sampled: Tensor) -> VarianceGap:
    """Compare passes reference (M, B, ...) and sampled (N, B, ...) of the same B rows.

    V = mean over elements e of (1/N) Σ_t (x_te - x̄_e)², a mean over passes of the per-pass
    term u_t = mean_e (x_te - x̄_e)²; its standard error is std_t(u_t) / √N (to first order, and
    whatever the correlation between elements). z = (V_ref - V_sampled) / √(se_ref² + se_s²).
    """
    values = [_mean_variance(x.double().flatten(1)) for x in (reference, sampled)]
    (v_ref, se_ref), (v_s, se_s) = values
    spread = (se_ref**2 + se_s**2) ** 0.5
    z = (v_ref - v_s) / spread if spread > 0 else (float("inf") if v_ref > v_s else 0.0)
    return VarianceGap(v_ref, v_s, z)


def _mean_variance(x: Tensor) -> tuple[float, float]:
    """(V, se(V)) of passes x (N, elements)."""
    per_pass = ((x - x.mean(0)) ** 2).mean(1)
    return float(per_pass.mean()), float(per_pass.std() / per_pass.numel() ** 0.5)


def audit_model(
    model: nn.Module,
    sampler: Sampler,
    probe: Tensor,
    known: Collection[str] = (),
    frozen: Collection[str] = (),
    passes: int = AUDIT_PASSES,
) -> AuditReport:
    """Audit ``model`` (kept in eval, restored after) against its ``sampler`` on probe rows
    (B, ...). ``known``: module names mcdrop samples or leaves off on purpose (not findings);
    ``frozen``: modules kept in eval in the reference (sites unsampled on purpose). A failing
    sample run raises :class:`SampleRunError` (the model cannot be served)."""
    started = time.perf_counter()
    findings = stochastic_modules(model, probe, known)
    try:
        with torch.inference_mode():
            sampled = sampler.sample(probe, passes, seed=0)
    except Exception as exc:
        raise SampleRunError(f"{type(exc).__name__}: {exc}") from exc
    note = None
    gap = None
    try:
        reference = reference_passes(model, probe, passes, frozen)
        gap = variance_gap(reference, sampled.to(reference.dtype))
    except Exception as exc:  # a model whose training-mode forward fails is still served
        note = f"the training-mode reference could not run ({type(exc).__name__}: {exc})"
    seconds = time.perf_counter() - started
    return AuditReport(findings, gap, passes, seconds, note)


def stochastic_modules(
    model: nn.Module, probe: Tensor, known: Collection[str] = ()
) -> list[Finding]:
    """Modules random in eval mode, else modules random when alone in training mode (not those
    in ``known``), in registration order."""
    with _eval_restored(model):
        if _varies(model, probe):
            # A known site random in eval (F.dropout(..., training=True) that mcdrop samples)
            # is no finding; then no module can be switched alone to tell more.
            return [f for f in _eval_sources(model, probe) if f.name not in known]
        found = []
        for name, module in model.named_modules():
            if name in known or not _may_be_random(module):
                continue
            module.training = True
            try:
                random = _varies(model, probe)
            except Exception:  # training-mode code that fails alone is not randomness
                random = False
            finally:
                module.training = False
            if random:
                found.append(_finding(name, module, RANDOM_IN_TRAINING))
        return found


def reference_passes(
    model: nn.Module, probe: Tensor, passes: int, frozen: Collection[str] = ()
) -> Tensor:
    """The model's own torch MC dropout: every module in training mode except normalization
    layers and ``frozen`` ones, ``passes`` forward calls on probe (B, ...), outputs
    (passes, B, ...); buffers and modes restored after."""
    with _eval_restored(model), _rng(probe.device), torch.inference_mode():
        for name, module in model.named_modules():
            module.training = not (isinstance(module, _NormBase) or name in frozen)
        torch.manual_seed(0)
        outputs = [_output(model, probe) for _ in range(passes)]
    return torch.stack(outputs)


def _may_be_random(module: nn.Module) -> bool:
    """Whether switching ``module`` alone to training mode could make it random: its forward
    reads ``training`` (or its source cannot be read); never a normalization layer or a
    dropout module mcdrop found."""
    if isinstance(module, _NormBase | _DropoutNd):
        return False
    source = _forward_source(module)
    return source is None or "training" in source


def _varies(model: nn.Module, probe: Tensor) -> bool:
    """Whether forwards under seeds 1, 2, ... ``VARY_RUNS`` do not all agree (a module drawing
    one coin per call, stochastic depth say, agrees by chance in 2^-(runs-1))."""
    with _rng(probe.device), torch.inference_mode():
        torch.manual_seed(1)
        first = _output(model, probe)
        for seed in range(2, VARY_RUNS + 1):
            torch.manual_seed(seed)
            if not torch.equal(first, _output(model, probe)):
                return True
    return False


def _eval_sources(model: nn.Module, probe: Tensor) -> list[Finding]:
    """Modules whose output differs between two eval runs while their inputs did not; a module
    is left out when one of its descendants is already named."""
    runs = [_recorded_calls(model, probe, seed) for seed in (1, 2)]
    random = {
        name
        for name, calls in runs[0].items()
        if any(
            _same(a_in, b_in) and not _same(a_out, b_out)
            for (a_in, a_out), (b_in, b_out) in zip(calls, runs[1].get(name, []), strict=False)
        )
    }
    modules = dict(model.named_modules())
    innermost = [
        name
        for name in modules
        if name in random and not any(o != name and _inside(o, name) for o in random)
    ]
    return [_finding(name, modules[name], RANDOM_IN_EVAL) for name in innermost]


def _inside(name: str, ancestor: str) -> bool:
    return ancestor == "" or name.startswith(f"{ancestor}.")


def _finding(name: str, module: nn.Module, reason: str) -> Finding:
    source = _forward_source(module)
    calls = source is not None and FUNCTIONAL_DROPOUT_CALL.search(source) is not None
    scripted = isinstance(module, torch.jit.ScriptModule)
    kind = str(getattr(module, "original_name", "")) if scripted else ""
    return Finding(name, kind or type(module).__name__, reason, calls, scripted)


def _forward_source(module: nn.Module) -> str | None:
    """The code of the module's forward (TorchScript: its compiled code), None if unreadable."""
    try:
        if isinstance(module, torch.jit.ScriptModule):
            return str(module.code)
        return inspect.getsource(type(module).forward)
    except (OSError, TypeError, RuntimeError, AttributeError):  # no readable code
        return None


Call = tuple[list[Tensor], list[Tensor]]


def _recorded_calls(model: nn.Module, probe: Tensor, seed: int) -> dict[str, list[Call]]:
    """Every module call's tensor inputs and outputs during one eval forward."""
    calls: dict[str, list[Call]] = {}
    handles: list[RemovableHandle] = []

    def recorder(name: str) -> Callable[[nn.Module, tuple[object, ...], object], None]:
        def hook(module: nn.Module, args: tuple[object, ...], output: object) -> None:
            calls.setdefault(name, []).append((_tensors(args), _tensors(output)))

        return hook

    for name, module in model.named_modules():
        handles.append(module.register_forward_hook(recorder(name)))
    try:
        with _rng(probe.device), torch.inference_mode():
            torch.manual_seed(seed)
            _output(model, probe)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def _tensors(value: object) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value.detach().clone()]
    if isinstance(value, tuple | list):
        return [t for item in value for t in _tensors(item)]
    return []


def _same(a: list[Tensor], b: list[Tensor]) -> bool:
    if len(a) != len(b):
        return False
    return all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b, strict=True))


def _output(model: nn.Module, probe: Tensor) -> Tensor:
    output = model(probe)
    if not isinstance(output, Tensor):
        raise TypeError("the model's forward does not return a tensor")
    return output


@contextmanager
def _rng(device: torch.device) -> Iterator[None]:
    """The global generators held (a TorchScript sampler or a stochastic module site serving
    another model seeds and draws them under the same lock) and restored after: the audit
    leaves no trace on them."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=devices):
        yield


@contextmanager
def _eval_restored(model: nn.Module) -> Iterator[None]:
    """Every module's mode and every buffer as they were, whatever ran inside."""
    modes = [(module, module.training) for module in model.modules()]
    buffers = [(buffer, buffer.detach().clone()) for buffer in model.buffers()]
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
