"""Pure uncertainty statistics over Monte Carlo samples shaped (N, B, ...)."""

from __future__ import annotations

from app.engine.stats.classification import (
    ClassificationStats,
    class_std,
    classification_stats,
    confidence,
    entropy,
    expected_entropy,
    mean_probabilities,
    mutual_information,
    predicted_class,
    predictive_entropy,
    variation_ratio,
)
from app.engine.stats.intervals import percentile_interval, sample_quantile
from app.engine.stats.regression import (
    RegressionStats,
    aleatoric_variance,
    epistemic_variance,
    mc_log_likelihood,
    mixture_quantile,
    predictive_interval,
    predictive_mean,
    regression_stats,
)

__all__ = [
    "ClassificationStats",
    "RegressionStats",
    "aleatoric_variance",
    "class_std",
    "classification_stats",
    "confidence",
    "entropy",
    "epistemic_variance",
    "expected_entropy",
    "mc_log_likelihood",
    "mean_probabilities",
    "mixture_quantile",
    "mutual_information",
    "percentile_interval",
    "predicted_class",
    "predictive_entropy",
    "predictive_interval",
    "predictive_mean",
    "regression_stats",
    "sample_quantile",
    "variation_ratio",
]
