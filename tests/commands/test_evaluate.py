"""``mcdrop evaluate``: local and --url modes give the same report; files with --out."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import cast

import httpx
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_digits

from app.cli import build_parser, main
from app.client import McdropClient
from app.commands import evaluate
from app.commands.tabular import write_csv
from app.engine.abstention import RANKING_SCORES
from tests.support import BUNDLED_MODELS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def digits_csv(tmp_path: Path) -> Path:
    """60 labelled digits: pixel0..pixel63 then the 'digit' column."""
    digits = load_digits()
    rows = [
        [*map(float, x), int(y)] for x, y in zip(digits.data[:60], digits.target[:60], strict=True)
    ]
    path = tmp_path / "digits.csv"
    write_csv(path, [f"pixel{i}" for i in range(64)] + ["digit"], rows)
    return path


def _run(*argv: str) -> int:
    return main(["evaluate", *argv, "--models-dir", str(BUNDLED_MODELS)])


def test_local_evaluation_prints_the_metrics(
    digits_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run("digits-mlp", "--data", str(digits_csv), "--target", "digit") == 0
    out = capsys.readouterr().out
    assert out.startswith("digits-mlp v1: 60 rows, N = 100\n")
    assert "ECE (15 bins)" in out and "selective accuracy at 90% coverage" in out


def test_url_mode_gives_the_local_report(
    digits_csv: Path,
    capsys: pytest.CaptureFixture[str],
    client_for: Callable[..., TestClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    common = ["--data", str(digits_csv), "--target", "digit", "--n-samples", "20", "--json"]
    assert _run("digits-mlp", *common) == 0
    local = json.loads(capsys.readouterr().out)
    client = client_for()
    monkeypatch.setattr(
        evaluate, "connect", lambda args: McdropClient(args.url, http=cast(httpx.Client, client))
    )
    assert _run("digits-mlp", *common, "--url", "http://mcdrop.test") == 0
    remote = json.loads(capsys.readouterr().out)
    assert remote == local and local["n_samples"] == 20 and local["seed"] == 0


def test_out_writes_pngs_and_a_self_contained_html_report(digits_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert (
        _run("digits-mlp", "--data", str(digits_csv), "--target", "digit", "--out", str(out)) == 0
    )
    pictures = [
        "reliability_diagram.png",
        "risk_coverage.png",
        "predictive_entropy_histogram.png",
        "mutual_information_histogram.png",
        "referral_accuracy.png",  # ten classes: no AUROC referral curve
    ]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*pictures, "report.html", "metrics.json"]
    )
    for name in pictures:
        assert (out / name).read_bytes().startswith(PNG_MAGIC)
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 5 and "ECE (15 bins)" in page
    assert "accuracy retained, 0% / 10% / 20% / 30% / 50% referred by MI" in page
    assert json.loads((out / "metrics.json").read_text())["rows"] == 60


def test_card_target_is_the_default_label_column(
    model_factory: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = model_factory("tiny", task="regression", card={"target": "y"})
    data = tmp_path / "reg.csv"
    write_csv(data, ["a", "b", "y"], [[1.0, 2.0, 3.0], [0.0, 1.0, 1.5]])
    # A single-output target column for a two-output model: the server-side check answers.
    assert main(["evaluate", str(folder), "--data", str(data)]) == 2
    assert "targets[0]: has 1 values, the model has 2 outputs" in capsys.readouterr().err


def test_missing_label_column_is_a_clear_error(
    digits_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run("digits-mlp", "--data", str(digits_csv)) == 2
    assert "--target" in capsys.readouterr().err
    assert _run("digits-mlp", "--data", str(digits_csv), "--target", "label") == 2
    assert "no column 'label'" in capsys.readouterr().err


@pytest.mark.parametrize("score", RANKING_SCORES)
def test_every_engine_ranking_score_is_a_choice(score: str) -> None:
    args = build_parser().parse_args(["evaluate", "m", "--data", "d", "--ranking-score", score])
    assert args.ranking_score == score


def test_unknown_ranking_score_is_refused() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "m", "--data", "d", "--ranking-score", "x"])


def test_a_segmentation_set_is_an_npz_of_inputs_and_masks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    from tests.segmentation_models import SIZE, images, write_unet_folder

    folder = write_unet_folder(tmp_path / "models")
    inputs = images(6).numpy()
    masks = (inputs[:, 0] > 0.5).astype(np.int64)
    data = tmp_path / "set.npz"
    np.savez(data, inputs=inputs, masks=masks)
    out = tmp_path / "report"
    argv = ["evaluate", str(folder), "--data", str(data), "--n-samples", "16", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("unet v1: 6 rows, N = 16\n")
    assert "mean foreground Dice" in printed
    assert "dice retained, 0% / 10% / 20% / 30% / 50% referred by MI" in printed
    assert (out / "referral_dice.png").read_bytes().startswith(PNG_MAGIC)
    report = json.loads((out / "metrics.json").read_text())["segmentation"]
    assert report["referral"][0]["curves"]["mutual_information"][0] == pytest.approx(
        report["mean_foreground_dice"]
    )
    np.savez(data, inputs=inputs, masks=masks[:, :, : SIZE - 1])
    assert main(argv) == 2
    assert "do not match" in capsys.readouterr().err
