"""Choosing dropout, length-scale and τ on a validation split, then refitting on every row."""

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
    grid."""


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


def _label(hyper: Hyper) -> str:
    return f"p={hyper.dropout:g} l={hyper.length_scale:g} tau={hyper.tau:g}"


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
    """Train one model on every row; with several grid points, first score each on a
    validation split (mean MC log-likelihood) and refit the best one on every row."""
    if not grid:
        raise ValueError("the hyper-parameter grid is empty")
    scores: list[tuple[Hyper, float]] = []
    best = grid[0]
    if len(grid) > 1:
        train_rows, held = validation_split(x.shape[0], val_fraction, config.seed)
        for index, hyper in enumerate(grid, start=1):
            bar = bars(f"[{index}/{len(grid)}] {_label(hyper)}", config.epochs) if bars else None
            model, _ = _run(task, x[train_rows], y[train_rows], outputs, hyper, config, bar)
            score = validation_score(task, model, hyper, x[held], y[held], config.eval_samples)
            scores.append((hyper, score))
        best = max(scores, key=lambda item: item[1])[0]
    bar = bars(f"[final] {_label(best)}", config.epochs) if bars else None
    model, loss = _run(task, x, y, outputs, best, config, bar)
    decay = weight_decay(best.dropout, best.length_scale, x.shape[0], best.tau)
    return Trained(model, best, decay, x.shape[0], loss, scores)
