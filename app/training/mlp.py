"""Training a dropout MLP the MC-dropout way (Gal & Ghahramani 2016).

Inputs, and regression targets, are standardised inside the model (`DropoutMLP`'s `Standardize`
and `Destandardize` buffers), so the saved model takes raw features and answers in target
units. The loss, with B the mini-batch and N the number of training rows, is

    (1/B) Σ_b E_b + λ Σ_layers ||W||²,   λ = p_keep · l² / (2 N τ),   p_keep = 1 - dropout,

E_b = ½ (ŷ_b - y_b)² on standardised targets (regression) or the cross-entropy
(classification, where τ = 1). With a variance head (``noise="heteroscedastic"``, Kendall & Gal
2017) E_b is the Gaussian negative log-likelihood ½ (e^{-s_b} (ŷ_b - y_b)² + s_b), s_b the
predicted log-variance of the standardised target, and τ = 1 in λ. When τ is to be fitted
(``Hyper.tau`` None) the regulariser uses τ = 1 and the served τ is chosen afterwards on the
validation split (`app.training.noise`). l is the prior length-scale and τ the precision of the
observation noise in standardised units; λ applies to the weight matrices, not the biases
(as in Gal's UCI experiments). It is added to the loss, not passed as the optimiser's
weight decay: Adam's weight_decay would add λ·W to the gradient, i.e. penalise (λ/2)·||W||².
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from app.architectures import DropoutMLP
from app.engine.dropout import find_dropout_layers
from app.engine.evaluation import negative_log_likelihood
from app.engine.sampler import MCSampler
from app.training.noise import HeldOutCheck, fit_noise_variance, held_out_check

Task = Literal["classification", "regression"]
Noise = Literal["homoscedastic", "heteroscedastic"]
REGULARISER_TAU = 1.0
"""τ in λ when τ itself is fitted after training, or the model predicts its own variance."""
_MIN_LOG_VARIANCE = -15.0
ProgressHook = Callable[[int, float], None]
"""Called after every epoch with (epochs done, mean training loss of that epoch)."""


@dataclass(frozen=True)
class Hyper:
    """One point of the hyper-parameter grid."""

    dropout: float
    """Dropout rate (probability of dropping a unit); Gal's p is the keep probability."""
    length_scale: float
    tau: float | None
    """Noise precision of standardised targets (regression); 1 for classification. None: fitted
    on the validation split after training (or predicted, with a variance head)."""

    @property
    def regulariser_tau(self) -> float:
        """τ in the weight decay λ."""
        return REGULARISER_TAU if self.tau is None else self.tau


@dataclass(frozen=True)
class TrainConfig:
    """How to train, whatever the hyper-parameters."""

    hidden: tuple[int, ...] = (64, 64)
    epochs: int = 200
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    min_feature_std: float = 0.0
    """Floor for the input standard deviations (a constant feature always gets 1)."""
    eval_samples: int = 100
    """MC passes when scoring a validation split."""
    noise: Noise = "homoscedastic"
    """Regression: one fitted noise level, or a variance head predicting it per row."""


def weight_decay(dropout: float, length_scale: float, rows: int, tau: float) -> float:
    """λ = p_keep · l² / (2 N τ) with p_keep = 1 - dropout (Gal & Ghahramani 2016, eq. 7)."""
    if not 0.0 <= dropout < 1.0 or length_scale <= 0 or rows < 1 or tau <= 0:
        raise ValueError("need 0 <= dropout < 1, length_scale > 0, rows >= 1, tau > 0")
    return (1.0 - dropout) * length_scale**2 / (2.0 * rows * tau)


def feature_statistics(x: Tensor, min_std: float = 0.0) -> tuple[Tensor, Tensor]:
    """Column means and standard deviations of x (B, F); a zero std becomes 1."""
    std = x.std(dim=0) if x.shape[0] > 1 else torch.ones(x.shape[1])
    std = torch.where(std > 0, std, torch.ones_like(std)).clamp_min(min_std)
    return x.mean(dim=0), std


def build_model(
    task: Task, x: Tensor, y: Tensor, outputs: int, hyper: Hyper, config: TrainConfig
) -> DropoutMLP:
    """A freshly initialised DropoutMLP whose standardisation buffers hold x's (and, for
    regression, y's) statistics."""
    torch.manual_seed(config.seed)
    model = DropoutMLP(
        in_features=x.shape[1],
        hidden=list(config.hidden),
        out_features=outputs,
        p=hyper.dropout,
        variance_head=task == "regression" and config.noise == "heteroscedastic",
        output_standardize=task == "regression",
    )
    model.standardize.set_statistics(*feature_statistics(x, config.min_feature_std))
    if model.destandardize is not None:
        model.destandardize.set_statistics(*feature_statistics(y))
    return model


def _penalty(model: nn.Module) -> Tensor:
    linear = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    return torch.stack([(w**2).sum() for w in linear]).sum()


def _data_loss(task: Task, model: DropoutMLP, output: Tensor, target: Tensor) -> Tensor:
    if task == "classification":
        return nn.functional.cross_entropy(output, target)
    assert model.destandardize is not None
    std = model.destandardize.std
    if not model.variance_head:
        residual = (output - target) / std
        return 0.5 * (residual**2).sum(dim=1).mean()
    width = model.out_features
    residual = (output[:, :width] - target) / std
    log_var = (output[:, width:] - 2.0 * torch.log(std)).clamp_min(_MIN_LOG_VARIANCE)
    return 0.5 * (residual**2 * torch.exp(-log_var) + log_var).sum(dim=1).mean()


def fit(
    task: Task,
    x: Tensor,
    y: Tensor,
    outputs: int,
    hyper: Hyper,
    config: TrainConfig,
    progress: ProgressHook | None = None,
) -> DropoutMLP:
    """Train on x (B, F) and y ((B,) long classes, or (B, D) float targets); eval mode out.

    Adam over shuffled mini-batches (a seeded generator), the loss of the module docstring.
    """
    model = build_model(task, x, y, outputs, hyper, config)
    decay = weight_decay(hyper.dropout, hyper.length_scale, x.shape[0], hyper.regulariser_tau)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(x.shape[0], generator=generator)
        total = 0.0
        for start in range(0, x.shape[0], config.batch_size):
            rows = order[start : start + config.batch_size]
            optimiser.zero_grad()
            loss = _data_loss(task, model, model(x[rows]), y[rows]) + decay * _penalty(model)
            torch.autograd.backward(loss)
            optimiser.step()
            total += float(loss.detach()) * rows.shape[0]
        if progress is not None:
            progress(epoch + 1, total / x.shape[0])
    return model.eval()


def target_precision(model: DropoutMLP, tau: float) -> float:
    """τ in target units for the card: τ / σ_y² (σ_y the training targets' std; one output)."""
    assert model.destandardize is not None
    return tau / float(model.destandardize.std.pow(2).mean())


def mc_passes(model: nn.Module, x: Tensor, samples: int, seed: int) -> Tensor:
    """(N, B, out) MC-dropout outputs with mcdrop's own sampler (the model stays in eval)."""
    sampler = MCSampler(model.eval(), find_dropout_layers(model), max_rows=16384)
    try:
        return sampler.sample(x, samples, seed)
    finally:
        sampler.close()


def validation_score(
    task: Task, model: DropoutMLP, hyper: Hyper, x: Tensor, y: Tensor, samples: int
) -> tuple[float, float | None, HeldOutCheck | None]:
    """(score, fitted noise variance, regression check) on held-out rows; higher scores are
    better. Classification: -NLL of p̄. Regression: Gal's mean MC test log-likelihood with
    σ² = 1/τ (target units), with σ² fitted here when ``hyper.tau`` is None, or the
    per-pass variances of a variance head."""
    passes = mc_passes(model, x, samples, seed=0)
    if task == "classification":
        return -float(negative_log_likelihood(torch.softmax(passes, -1).mean(0), y)), None, None
    fitted: float | None = None
    noise: float | Tensor
    if model.variance_head:
        width = model.out_features
        passes, noise = passes[..., :width], torch.exp(passes[..., width:].double())
    elif hyper.tau is None:
        noise = fitted = fit_noise_variance(passes, y)
    else:
        noise = 1.0 / target_precision(model, hyper.tau)
    check = held_out_check(passes, noise, y)
    return check.log_likelihood, fitted, check


def validation_split(rows: int, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """(train indices, validation indices): a seeded shuffle, at least one row each."""
    if not 0.0 < fraction < 1.0 or rows < 2:
        raise ValueError("a validation split needs 0 < fraction < 1 and at least 2 rows")
    order = torch.randperm(rows, generator=torch.Generator().manual_seed(seed))
    held = min(rows - 1, max(1, math.floor(rows * fraction)))
    return order[held:], order[:held]


def hyper_grid(
    dropouts: Sequence[float], length_scales: Sequence[float], taus: Sequence[float | None]
) -> list[Hyper]:
    """Every combination, in the order given (a τ of None: fitted after training)."""
    return [Hyper(p, scale, t) for p in dropouts for scale in length_scales for t in taus]
