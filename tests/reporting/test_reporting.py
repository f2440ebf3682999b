"""Pictures, metric tables and the self-contained HTML page of an evaluation."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from app.engine.evaluation import ClassificationReport, classification_report, regression_report
from app.reporting import figures
from app.reporting.evaluation_report import evaluation_pictures, write_evaluation_report
from app.reporting.html import html_report
from app.reporting.summary import metric_rows, text_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _classification() -> ClassificationReport:
    generator = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(10, 40, 3, generator=generator, dtype=torch.float64), -1)
    return classification_report(probs, torch.arange(40) % 3, coverages=(0.5, 1.0))


def test_classification_rows_and_text_table() -> None:
    report = _classification()
    rows = metric_rows(report)
    names = [name for name, _ in rows]
    assert names[:4] == ["accuracy", "NLL (nats)", "Brier score", "ECE (15 bins)"]
    assert "selective accuracy at 50% coverage" in names
    table = text_table([("a", "1"), ("longer", "2")])
    assert table == "a       1\nlonger  2"


def test_regression_rows() -> None:
    preds = torch.arange(12, dtype=torch.float64).reshape(3, 4, 1)
    report = regression_report(preds, 1.0, torch.zeros(4, 1, dtype=torch.float64), level=0.9)
    names = [name for name, _ in metric_rows(report)]
    assert names == [
        "RMSE",
        "MC test log-likelihood (per row)",
        "90% predictive interval coverage",
        "CRPS",
    ]
    assert set(evaluation_pictures(report)) == {
        "interval_calibration.png",
        "std_histogram.png",
        "epistemic_std_histogram.png",
    }


def test_html_report_inlines_images_and_escapes_text() -> None:
    page = html_report("a <b>", [("model", "x&y")], [("ECE", "0.1")], {"pic": PNG_MAGIC})
    assert "<title>a &lt;b&gt;</title>" in page and "x&amp;y" in page
    encoded = base64.b64encode(PNG_MAGIC).decode()
    assert f'src="data:image/png;base64,{encoded}"' in page
    assert "http" not in page  # nothing fetched from elsewhere


def test_write_report_writes_every_picture(tmp_path: Path) -> None:
    report = _classification()
    out = tmp_path / "out"
    written = write_evaluation_report(out, "t", [("rows", "40")], report)
    assert [p.name for p in written][-1] == "report.html"
    for path in written[:-1]:
        assert path.read_bytes().startswith(PNG_MAGIC)


def test_roc_plot_is_a_png() -> None:
    png = figures.roc_plot({"MI": ([0.0, 0.5, 1.0], [0.0, 0.9, 1.0], 0.7)}, "ROC")
    assert png.startswith(PNG_MAGIC)


def test_missing_matplotlib_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(figures.PlottingUnavailableError, match=r"mcdrop\[report\]"):
        figures.roc_plot({}, "ROC")


def test_the_server_does_not_import_matplotlib() -> None:
    code = (
        "import sys; from app.main import create_app; from app.cli import build_parser; "
        "create_app(); build_parser(); "
        "print(sorted(m for m in sys.modules if m.startswith(('matplotlib', 'app.reporting'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
