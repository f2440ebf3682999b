"""An evaluation report written out: its PNG pictures and a self-contained HTML page."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from app.engine.evaluation import ClassificationReport, RegressionReport
from app.engine.evaluation.referral import Referral
from app.engine.evaluation.segmentation import SegmentationReport
from app.reporting.html import html_report
from app.reporting.summary import metric_rows


def evaluation_pictures(
    report: ClassificationReport | RegressionReport | SegmentationReport,
) -> dict[str, bytes]:
    """File name -> PNG bytes of the report's pictures."""
    from app.reporting import figures

    if isinstance(report, SegmentationReport):
        return referral_pictures(report.referral)
    if isinstance(report, ClassificationReport):
        entropy = report.histograms["predictive_entropy"]
        information = report.histograms["mutual_information"]
        return referral_pictures(report.referral) | {
            "reliability_diagram.png": figures.reliability_diagram(
                {"mean of the MC passes": report.reliability}, "Reliability diagram"
            ),
            "risk_coverage.png": figures.risk_coverage_plot(
                {f"ranked by {report.ranking_score}": report.risk_coverage},
                f"Risk-coverage curve (AURC {report.aurc:.4f})",
            ),
            "predictive_entropy_histogram.png": figures.histogram_plot(
                entropy, "Predictive entropy", "predictive entropy (nats)"
            ),
            "mutual_information_histogram.png": figures.histogram_plot(
                information, "Mutual information (epistemic)", "mutual information (nats)"
            ),
        }
    return {
        "interval_calibration.png": figures.interval_calibration_plot(
            {"predictive interval": report.interval_calibration}, "Predictive interval coverage"
        ),
        "std_histogram.png": figures.histogram_plot(
            report.histograms["std"], "Predictive standard deviation", "std (target units)"
        ),
        "epistemic_std_histogram.png": figures.histogram_plot(
            report.histograms["epistemic_std"],
            "Epistemic standard deviation (spread of the passes)",
            "std of the pass means (target units)",
        ),
    }


def referral_pictures(referrals: list[Referral]) -> dict[str, bytes]:
    """``referral_<metric>.png`` per referral curve."""
    from app.reporting import figures

    return {
        f"referral_{referral.metric}.png": figures.referral_plot(
            referral, f"Referral: {referral.metric} on the retained cases"
        )
        for referral in referrals
    }


def write_evaluation_report(
    out_dir: Path,
    title: str,
    about: Sequence[tuple[str, str]],
    report: ClassificationReport | RegressionReport | SegmentationReport,
) -> list[Path]:
    """Write the PNG pictures and ``report.html`` (pictures inlined) into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pictures = evaluation_pictures(report)
    written = []
    for name, png in pictures.items():
        (out_dir / name).write_bytes(png)
        written.append(out_dir / name)
    captions = {name.removesuffix(".png").replace("_", " "): png for name, png in pictures.items()}
    page = html_report(title, about, metric_rows(report), captions)
    (out_dir / "report.html").write_text(page)
    written.append(out_dir / "report.html")
    return written
