"""How good are the predictions and their uncertainty: metrics against labelled data.

Pure metric functions (`classification`, `regression`, `ood`), the reports that gather them
(`report`) and the run that samples a model on labelled rows (`runner`).
"""

from __future__ import annotations

from app.engine.evaluation.classification import (
    accuracy,
    area_under_risk_coverage,
    brier_score,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_bins,
    risk_coverage_curve,
    selective_risk,
)
from app.engine.evaluation.ood import auroc, kept_share, roc_curve, threshold_for_share
from app.engine.evaluation.regression import (
    gaussian_expected_abs,
    interval_coverage,
    mc_test_log_likelihood,
    mixture_crps,
    rmse,
)
from app.engine.evaluation.report import (
    DEFAULT_COVERAGES,
    ClassificationReport,
    CoveragePoint,
    Histogram,
    RegressionReport,
    ReliabilityBin,
    RiskCoverage,
    SelectivePoint,
    classification_report,
    regression_report,
)
from app.engine.evaluation.runner import Evaluation, evaluate, parse_targets

__all__ = [
    "DEFAULT_COVERAGES",
    "ClassificationReport",
    "CoveragePoint",
    "Evaluation",
    "Histogram",
    "RegressionReport",
    "ReliabilityBin",
    "RiskCoverage",
    "SelectivePoint",
    "accuracy",
    "area_under_risk_coverage",
    "auroc",
    "brier_score",
    "classification_report",
    "evaluate",
    "expected_calibration_error",
    "gaussian_expected_abs",
    "interval_coverage",
    "kept_share",
    "mc_test_log_likelihood",
    "mixture_crps",
    "negative_log_likelihood",
    "parse_targets",
    "regression_report",
    "reliability_bins",
    "risk_coverage_curve",
    "rmse",
    "roc_curve",
    "selective_risk",
    "threshold_for_share",
]
