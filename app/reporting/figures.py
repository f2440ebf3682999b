"""The pictures of an evaluation as PNG bytes, drawn with matplotlib's object API (no pyplot).

Each function takes one or more named series so that a picture can compare runs (N = 1 vs
N = 100, in-distribution vs OOD). matplotlib is imported on first use: the server never needs it.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from app.engine.evaluation import CoveragePoint, Histogram, ReliabilityBin, RiskCoverage
from app.engine.evaluation.referral import Referral

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
_SIZE = (6.0, 4.5)


class PlottingUnavailableError(RuntimeError):
    """matplotlib is not installed."""


def _figure(rows: int = 1, height_ratios: Sequence[int] | None = None) -> tuple[Figure, list[Axes]]:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlottingUnavailableError(
            "pictures need matplotlib: pip install 'mcdrop[report]'"
        ) from exc
    figure = Figure(figsize=(_SIZE[0], _SIZE[1] * (1.0 if rows == 1 else 1.35)), dpi=100)
    grid = {"height_ratios": list(height_ratios)} if height_ratios else None
    axes = figure.subplots(rows, 1, sharex=rows > 1, gridspec_kw=grid, squeeze=False)
    return figure, [row[0] for row in axes]


def _png(figure: Figure) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def reliability_diagram(series: Mapping[str, Sequence[ReliabilityBin]], title: str) -> bytes:
    """Accuracy against confidence per bin (bars; the diagonal is perfect calibration), with
    the share of rows in each bin below on a log scale."""
    figure, (top, bottom) = _figure(2, height_ratios=(3, 1))
    width = None
    for index, (name, bins) in enumerate(series.items()):
        width = (bins[0].upper - bins[0].lower) / len(series)
        left = [b.lower + index * width for b in bins]
        accuracy = [b.accuracy if b.accuracy is not None else 0.0 for b in bins]
        total = sum(b.count for b in bins) or 1
        colour = _COLOURS[index % len(_COLOURS)]
        top.bar(left, accuracy, width=width, align="edge", color=colour, alpha=0.7, label=name)
        shares = [b.count / total for b in bins]
        bottom.bar(left, shares, width=width, align="edge", color=colour, alpha=0.7)
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    top.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title)
    top.legend(loc="upper left", fontsize="small")
    bottom.set(xlabel="confidence (max mean probability)", ylabel="share of rows", yscale="log")
    return _png(figure)


def risk_coverage_plot(series: Mapping[str, RiskCoverage], title: str) -> bytes:
    """Selective risk (error share among answered rows) against coverage, one line per series."""
    figure, (axes,) = _figure()
    for index, (name, curve) in enumerate(series.items()):
        colour = _COLOURS[index % len(_COLOURS)]
        axes.plot(curve.coverage, curve.risk, color=colour, label=name)
    axes.set(xlabel="coverage (share of rows answered)", ylabel="selective risk", xlim=(0, 1))
    axes.set_ylim(bottom=0)
    axes.set_title(title)
    axes.legend(loc="upper left", fontsize="small")
    return _png(figure)


def histogram_plot(histogram: Histogram, title: str, xlabel: str) -> bytes:
    """The histogram's groups as overlaid step-filled bars (e.g. correct vs wrong rows)."""
    figure, (axes,) = _figure()
    edges = histogram.edges
    for index, (name, counts) in enumerate(histogram.counts.items()):
        colour = _COLOURS[index % len(_COLOURS)]
        axes.stairs(counts, edges, fill=True, alpha=0.45, color=colour, label=f"{name}")
        axes.stairs(counts, edges, color=colour)
    axes.set(xlabel=xlabel, ylabel="rows", title=title)
    axes.set_yscale("symlog", linthresh=1)
    axes.legend(fontsize="small")
    return _png(figure)


def interval_calibration_plot(series: Mapping[str, Sequence[CoveragePoint]], title: str) -> bytes:
    """Observed share of targets inside the central predictive interval against its level."""
    figure, (axes,) = _figure()
    for index, (name, points) in enumerate(series.items()):
        colour = _COLOURS[index % len(_COLOURS)]
        levels = [p.level for p in points]
        axes.plot(levels, [p.coverage for p in points], marker="o", color=colour, label=name)
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    axes.set(xlabel="nominal level", ylabel="observed coverage", xlim=(0, 1), ylim=(0, 1))
    axes.set_title(title)
    axes.legend(loc="upper left", fontsize="small")
    return _png(figure)


def roc_plot(
    series: Mapping[str, tuple[Sequence[float], Sequence[float], float]], title: str
) -> bytes:
    """ROC curves: name -> (false positive rates, true positive rates, AUROC)."""
    figure, (axes,) = _figure()
    for index, (name, (fpr, tpr, area)) in enumerate(series.items()):
        colour = _COLOURS[index % len(_COLOURS)]
        axes.plot(fpr, tpr, color=colour, label=f"{name} (AUROC {area:.3f})")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    axes.set(xlabel="false positive rate (in-distribution flagged)", xlim=(0, 1), ylim=(0, 1))
    axes.set(ylabel="true positive rate (OOD flagged)", title=title)
    axes.legend(loc="lower right", fontsize="small")
    return _png(figure)


def referral_plot(referral: Referral, title: str) -> bytes:
    """The metric on the retained cases against the referral rate, one line per ordering
    (Leibig et al. 2017: a useful uncertainty makes it rise)."""
    figure, (axes,) = _figure()
    for index, (name, curve) in enumerate(referral.curves.items()):
        colour = _COLOURS[index % len(_COLOURS)]
        points = [(r, v) for r, v in zip(referral.rates, curve, strict=True) if v is not None]
        label = "1 - confidence" if name == "confidence" else name.replace("_", " ")
        axes.plot(*zip(*points, strict=True), marker=".", color=colour, label=label)
    axes.set(xlabel="referral rate (most uncertain cases referred)", xlim=(0, 1))
    axes.set(ylabel=f"{referral.metric} on the retained cases", title=title)
    axes.legend(loc="lower right", fontsize="small")
    return _png(figure)
