"""Conformal calibration of a model on labelled rows, and the check of its sets on new rows."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from app.engine.conformal import (
    ConformalKind,
    ConformalOutput,
    ConformalRule,
    aps_scores,
    conformal_quantile,
    minimum_rows,
    normalised_residuals,
)
from app.engine.predictor import Passes
from app.engine.stats import aleatoric_variance, epistemic_variance
from app.errors import InvalidInputError


@dataclass(frozen=True)
class ConformalReport:
    """How a conformal rule did on labelled rows."""

    level: float
    rows: int
    coverage: float
    """Share of rows whose target lies in the band (every output) or the prediction set."""
    mean_width: float | None = None
    """Regression: mean of upper - lower over rows and outputs."""
    mean_set_size: float | None = None
    """Classification: mean number of classes per prediction set."""


def summary(passes: Passes) -> tuple[Tensor, Tensor | None]:
    """(mean, std): the passes' mean (B, D) and total predictive std (B, D) for regression,
    the mean probabilities (B, C) and None for classification."""
    values = passes.values.double()
    mean = values.mean(dim=0)
    if passes.noise_variance is None:
        return mean, None
    noise = passes.noise_variance
    noise = noise.double() if isinstance(noise, Tensor) else noise
    std = (epistemic_variance(values) + aleatoric_variance(noise, values)).sqrt()
    return mean, std


def conformal_scores(passes: Passes, targets: Tensor) -> tuple[ConformalKind, Tensor]:
    """(kind, scores (B,)): normalised residuals (regression, targets (B, D)) or APS scores
    of the true classes (classification, targets (B,) long)."""
    mean, std = summary(passes)
    if std is None:
        return "aps", aps_scores(mean, targets)
    return "normalised_residual", normalised_residuals(mean, std, targets.double())


def fit_conformal(passes: Passes, targets: Tensor, level: float) -> ConformalRule:
    """The rule whose quantile is the split-conformal quantile of the rows' scores at `level`.

    Raises InvalidInputError when there are too few rows for a finite quantile.
    """
    rows = int(targets.shape[0])
    needed = minimum_rows(level)
    if rows < needed:
        raise InvalidInputError(
            "data", f"{rows} calibration rows are too few for level {level}: need {needed}"
        )
    kind, scores = conformal_scores(passes, targets)
    return ConformalRule(kind=kind, level=level, quantile=conformal_quantile(scores, level))


def conformal_report(output: ConformalOutput, targets: Tensor) -> ConformalReport:
    """Coverage and mean width (band) or mean size (sets) of `output` against targets."""
    rows = int(targets.shape[0])
    if output.sets is not None:
        covered = output.sets.gather(1, targets.long().unsqueeze(1)).squeeze(1)
        size = float(output.sets.double().sum(dim=1).mean())
        return ConformalReport(
            output.level, rows, float(covered.double().mean()), mean_set_size=size
        )
    assert output.lower is not None and output.upper is not None
    target = targets.double()
    inside = ((target >= output.lower) & (target <= output.upper)).all(dim=1)
    width = float((output.upper - output.lower).double().mean())
    return ConformalReport(output.level, rows, float(inside.double().mean()), mean_width=width)
