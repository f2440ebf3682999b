"""An evaluation report as (metric, value) rows, for the terminal and the HTML report."""

from __future__ import annotations

from app.commands.tables import table
from app.engine.evaluation import ClassificationReport, RegressionReport
from app.engine.evaluation.referral import Referral
from app.engine.evaluation.segmentation import SegmentationReport


def _number(value: float) -> str:
    return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"


def classification_rows(report: ClassificationReport) -> list[tuple[str, str]]:
    """Accuracy, proper scores, calibration and selective metrics of a classification report."""
    rows = [
        ("accuracy", _number(report.accuracy)),
        ("NLL (nats)", _number(report.nll)),
        ("Brier score", _number(report.brier)),
        ("ECE (15 bins)", _number(report.ece)),
        (f"AURC ({report.ranking_score})", _number(report.aurc)),
    ]
    rows += [
        (f"selective accuracy at {point.coverage:.0%} coverage", _number(point.accuracy))
        for point in report.selective
    ]
    rows += [
        (f"AURC ranked by {name}", _number(value)) for name, value in report.aurc_by_score.items()
    ]
    for referral in report.referral:
        rows += referral_rows(referral)
    return rows


SHOWN_RATES = (0.1, 0.2, 0.3, 0.5)
"""The referral rates the terminal and the report's table show (the picture has them all)."""
ORDERING_NAMES = {
    "mutual_information": "MI",
    "predictive_entropy": "entropy",
    "confidence": "1 - confidence",
}


def referral_rows(referral: Referral) -> list[tuple[str, str]]:
    """One row per ordering: the retained metric at 0 and the ``SHOWN_RATES`` referred."""
    shown = [rate for rate in (0.0, *SHOWN_RATES) if rate in referral.rates]
    rates = " / ".join(f"{rate:.0%}" for rate in shown)
    rows = []
    for ordering, curve in referral.curves.items():
        values = [curve[referral.rates.index(rate)] for rate in shown]
        text = " / ".join("-" if value is None else f"{value:.4f}" for value in values)
        name = ORDERING_NAMES.get(ordering, ordering)
        rows.append((f"{referral.metric} retained, {rates} referred by {name}", text))
    return rows


def regression_rows(report: RegressionReport) -> list[tuple[str, str]]:
    """RMSE, MC log-likelihood, interval coverage and CRPS of a regression report."""
    return [
        ("RMSE", _number(report.rmse)),
        ("MC test log-likelihood (per row)", _number(report.log_likelihood)),
        (f"{report.pi_level:.0%} predictive interval coverage", _number(report.pi_coverage)),
        ("CRPS", _number(report.crps)),
    ]


def segmentation_rows(report: SegmentationReport) -> list[tuple[str, str]]:
    """Mean foreground Dice, pixel accuracy, each class's mean Dice, the referral curve."""
    rows = [
        ("images", str(len(report.images))),
        ("mean foreground Dice", _number(report.mean_foreground_dice)),
        ("pixel accuracy", _number(report.pixel_accuracy)),
    ]
    rows += [(f"mean Dice of class {c}", _number(d)) for c, d in enumerate(report.mean_dice)]
    for referral in report.referral:
        rows += referral_rows(referral)
    return rows


def metric_rows(
    report: ClassificationReport | RegressionReport | SegmentationReport,
) -> list[tuple[str, str]]:
    """The rows of any kind of report."""
    if isinstance(report, ClassificationReport):
        return classification_rows(report)
    if isinstance(report, SegmentationReport):
        return segmentation_rows(report)
    return regression_rows(report)


def text_table(rows: list[tuple[str, str]]) -> str:
    """Two aligned columns, metric and value (the CLI's table renderer, without headers)."""
    return table(None, rows)
