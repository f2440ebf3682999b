"""Conformal calibration of a model on labelled rows, and the check of its sets on new rows."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from app.engine.conformal import (
    ConformalKind,
    ConformalOutput,
    ConformalRule,
    aps_scores,
    conformal_quantile,
    minimum_rows,
    mondrian_quantiles,
    normalised_residuals,
)
from app.engine.conformal_sets import SetParameters, calibration_scores
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
    class_coverage: dict[str, float] = field(default_factory=dict)
    """Classification: coverage over the rows of each class (class index -> share)."""
    empty_sets: float | None = None
    """Classification: share of rows whose set is empty (LAC and randomised sets may be)."""


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


def conformal_scores(
    passes: Passes, targets: Tensor, parameters: SetParameters | None = None
) -> tuple[ConformalKind, Tensor]:
    """(kind, scores (B,)): normalised residuals (regression, targets (B, D)) or the set
    scores of the true classes (classification, targets (B,) long; APS by default)."""
    mean, std = summary(passes)
    if std is None:
        if parameters is None:
            return "aps", aps_scores(mean, targets)
        generator = torch.Generator().manual_seed(passes.seed)
        return parameters.score, calibration_scores(mean, targets, parameters, generator)
    return "normalised_residual", normalised_residuals(mean, std, targets.double())


def fit_conformal(
    passes: Passes,
    targets: Tensor,
    level: float,
    parameters: SetParameters | None = None,
    mondrian: bool = False,
) -> ConformalRule:
    """The rule whose quantile is the split-conformal quantile of the rows' scores at `level`
    (classification: with ``parameters``' score; ``mondrian``: one quantile per class).

    Raises InvalidInputError when there are too few rows for a finite quantile.
    """
    rows = int(targets.shape[0])
    needed = minimum_rows(level)
    if rows < needed:
        raise InvalidInputError(
            "data", f"{rows} calibration rows are too few for level {level}: need {needed}"
        )
    kind, scores = conformal_scores(passes, targets, parameters)
    per_class = None
    if mondrian and kind != "normalised_residual":
        classes = int(passes.values.shape[-1])
        per_class = tuple(mondrian_quantiles(scores, targets, classes, level).tolist())
    options = parameters or SetParameters("aps")
    return ConformalRule(
        kind=kind,
        level=level,
        quantile=conformal_quantile(scores, level),
        penalty=options.penalty,
        k_reg=options.k_reg,
        randomized=options.randomized,
        class_quantiles=per_class,
    )


def conformal_report(output: ConformalOutput, targets: Tensor) -> ConformalReport:
    """Coverage and mean width (band) or mean size (sets) of `output` against targets."""
    rows = int(targets.shape[0])
    if output.sets is not None:
        labels = targets.long()
        covered = output.sets.gather(1, labels.unsqueeze(1)).squeeze(1).double()
        sizes = output.sets.double().sum(dim=1)
        per_class = {
            str(c): float(covered[labels == c].mean())
            for c in range(output.sets.shape[1])
            if bool((labels == c).any())
        }
        return ConformalReport(
            output.level,
            rows,
            float(covered.mean()),
            mean_set_size=float(sizes.mean()),
            class_coverage=per_class,
            empty_sets=float((sizes == 0).double().mean()),
        )
    assert output.lower is not None and output.upper is not None
    target = targets.double()
    inside = ((target >= output.lower) & (target <= output.upper)).all(dim=1)
    width = float((output.upper - output.lower).double().mean())
    return ConformalReport(output.level, rows, float(inside.double().mean()), mean_width=width)
