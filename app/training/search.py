"""Choosing dropout, length-scale and τ on a validation split, then refitting on every row.

Regression always holds a validation split out first: τ is fitted on it (unless given), the
grid is scored on it, and the chosen model's held-out RMSE, log-likelihood and 95% PI coverage
are reported from it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from torch import Tensor

from app.architectures import DropoutMLP
from app.training.mlp import (
    Hyper,
    Task,
    TrainConfig,
    fit,
    validation_score,
    validation_split,
    weight_decay,
)
from app.training.noise import HeldOutCheck
from app.training.progress import ProgressBar

BarFactory = Callable[[str, int], ProgressBar]
"""(label, total epochs) -> a progress bar for one training run."""


@dataclass(frozen=True)
class Trained:
    """The final model, its hyper-parameters and how they were chosen."""

    model: DropoutMLP
    hyper: Hyper
    weight_decay: float
    rows: int
    final_loss: float
    validation: list[tuple[Hyper, float]] = field(default_factory=list)
    """(hyper, mean validation log-likelihood per row) of every grid point; empty without a
    validation split."""
    noise_variance: float | None = None
    """σ² in target units fitted on the validation split (``hyper.tau`` None, no variance
    head); the served τ is 1/σ²."""
    check: HeldOutCheck | None = None
    """Regression: the chosen grid point's model on the validation rows."""
    fitted_noise: list[float | None] = field(default_factory=list)
    """The σ² fitted for each grid point, in the order of `validation`."""


def _run(
    task: Task,
    x: Tensor,
    y: Tensor,
    outputs: int,
    hyper: Hyper,
    config: TrainConfig,
    bar: ProgressBar | None,
) -> tuple[DropoutMLP, float]:
    losses: list[float] = []

    def hook(epoch: int, loss: float) -> None:
        losses.append(loss)
        if bar is not None:
            bar.update(epoch, f"loss {loss:.4f}")

    try:
        model = fit(task, x, y, outputs, hyper, config, hook)
    finally:
        if bar is not None:
            bar.close()
    return model, losses[-1] if losses else float("nan")


def hyper_label(hyper: Hyper) -> str:
    """A grid point as the progress bars and the terminal show it."""
    tau = "fitted" if hyper.tau is None else f"{hyper.tau:g}"
    return f"p={hyper.dropout:g} l={hyper.length_scale:g} tau={tau}"


def train(
    task: Task,
    x: Tensor,
    y: Tensor,
    outputs: int,
    grid: Sequence[Hyper],
    config: TrainConfig,
    val_fraction: float = 0.2,
    bars: BarFactory | None = None,
) -> Trained:
    """Train one model on every row. Regression, or several grid points, first trains each
    point on a validation split, scores it there (mean MC log-likelihood; τ fitted there when
    None) and then refits the best one on every row."""
    if not grid:
        raise ValueError("the hyper-parameter grid is empty")
    if any(hyper.tau is None for hyper in grid) and task != "regression":
        raise ValueError("a fitted tau applies to regression only")
    best, index = grid[0], 0
    scores: list[tuple[Hyper, float]] = []
    fitted: list[float | None] = []
    checks: list[HeldOutCheck | None] = []
    if len(grid) > 1 or task == "regression":
        train_rows, held = validation_split(x.shape[0], val_fraction, config.seed)
        for number, hyper in enumerate(grid, start=1):
            bar = (
                bars(f"[{number}/{len(grid)}] {hyper_label(hyper)}", config.epochs)
                if bars
                else None
            )
            model, _ = _run(task, x[train_rows], y[train_rows], outputs, hyper, config, bar)
            score, noise, check = validation_score(
                task, model, hyper, x[held], y[held], config.eval_samples
            )
            scores.append((hyper, score))
            fitted.append(noise)
            checks.append(check)
        index = max(range(len(scores)), key=lambda i: scores[i][1])
        best = grid[index]
    bar = bars(f"[final] {hyper_label(best)}", config.epochs) if bars else None
    model, loss = _run(task, x, y, outputs, best, config, bar)
    decay = weight_decay(best.dropout, best.length_scale, x.shape[0], best.regulariser_tau)
    return Trained(
        model,
        best,
        decay,
        x.shape[0],
        loss,
        scores,
        noise_variance=fitted[index] if fitted else None,
        check=checks[index] if checks else None,
        fitted_noise=fitted,
    )
