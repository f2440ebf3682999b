"""``mcdrop calibrate SEG-MODEL --refer R --data eval.npz``: a threshold on each image's mean (or
foreground) mutual information, written to the card; the served images then carry ``abstain``
(v1 rows and the v2 ``abstain`` output) exactly where their score is over it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from fastapi.testclient import TestClient

from app.cli import main
from tests.segmentation_models import SIZE, images, write_unet_folder

N, SEED, IMAGES = 16, 3, 20


def _images() -> torch.Tensor:
    """Images of varied contrast (some far noisier than the rest): distinct MI per image."""
    scale = torch.linspace(0.2, 3.0, IMAGES).view(-1, 1, 1, 1)
    return images(IMAGES, seed=7) * scale


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_unet_folder(root, "unet", {"p": 0.3}, labels=["background", "lesion"])
    inputs = _images().numpy()
    masks = (inputs[:, 0] > 0.5).astype(np.int64)
    np.savez(root / "eval.npz", inputs=inputs, masks=masks)
    argv = ["calibrate", "unet", "--models-dir", str(root), "--data", str(root / "eval.npz")]
    assert main([*argv, "--refer", "0.2", "--n-samples", str(N), "--seed", str(SEED)]) == 0
    return root


@pytest.fixture(scope="module")
def client(root: Path) -> Iterator[TestClient]:
    from app.config import load_settings
    from app.main import create_app

    with TestClient(create_app(load_settings(models_dir=root))) as started:
        yield started


def _abstention(root: Path) -> Any:
    return yaml.safe_load((root / "unet" / "model.yaml").read_text())["abstention"]


def _rows(client: TestClient, inputs: torch.Tensor, seed: int = SEED) -> list[Any]:
    body = {"inputs": inputs.tolist(), "n_samples": N, "seed": seed, "maps": "none"}
    response = client.post("/v1/models/unet/predict", json=body)
    assert response.status_code == 200, response.text
    rows: list[Any] = response.json()["predictions"]
    return rows


def test_the_card_holds_a_threshold_on_mean_mutual_information(root: Path) -> None:
    abstention = _abstention(root)
    assert abstention["score"] == "mean_mutual_information"
    assert abstention["in_distribution_share"] == pytest.approx(0.8)
    assert abstention["calibrated_on"] == "eval.npz" and abstention["n_samples"] == N


def test_the_requested_share_of_calibration_images_abstains(root: Path, client: TestClient) -> None:
    rows = _rows(client, _images())
    scores = [row["mean_mutual_information"] for row in rows]
    assert len(set(scores)) == IMAGES  # no ties: exactly 20% above the threshold
    assert sum(row["abstain"] for row in rows) == round(0.2 * IMAGES)
    threshold = _abstention(root)["threshold"]
    assert threshold == sorted(scores)[round(0.8 * IMAGES) - 1]


def test_served_flags_are_the_threshold_comparison(root: Path, client: TestClient) -> None:
    threshold = _abstention(root)["threshold"]
    fresh = images(6, seed=11) * torch.tensor([0.3, 1, 2, 3, 4, 5]).view(-1, 1, 1, 1)
    rows = _rows(client, fresh, seed=99)
    flags = [row["abstain"] for row in rows]
    assert flags == [row["mean_mutual_information"] > threshold for row in rows]
    assert 0 < sum(flags) < len(flags)  # both answers occur: the comparison is tested
    body = {
        "inputs": [
            {
                "name": "input",
                "shape": [6, 1, SIZE, SIZE],
                "datatype": "FP32",
                "data": fresh.flatten().tolist(),
            }
        ],
        "parameters": {"n_samples": N, "seed": 99},
    }
    response = client.post("/v2/models/unet/infer", json=body)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["abstain"]["datatype"] == "BOOL" and outputs["abstain"]["data"] == flags


def test_ood_images_are_flagged_and_both_scores_get_an_auroc(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    noisy = (
        torch.randn((8, 1, SIZE, SIZE), generator=torch.Generator().manual_seed(2)) * 4
    ).numpy()
    np.savez(tmp_path / "ood.npz", inputs=noisy)  # no masks: calibration needs none
    argv = ["calibrate", "unet", "--models-dir", str(root), "--data", str(root / "eval.npz")]
    options = ["--ood-data", str(tmp_path / "ood.npz"), "--n-samples", "8", "--dry-run", "--json"]
    assert main([*argv, *options]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["out_rows"] == 8 and 0.0 <= result["out_flagged"] <= 1.0
    assert set(result["auroc"]) == {"mean_mutual_information", "foreground_mutual_information"}


def test_foreground_score_and_scores_of_other_tasks(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["calibrate", "unet", "--models-dir", str(root), "--data", str(root / "eval.npz")]
    options = ["--n-samples", "4", "--dry-run", "--json"]
    assert main([*argv, *options, "--score", "foreground_mutual_information"]) == 0
    assert '"score": "foreground_mutual_information"' in capsys.readouterr().out
    assert main([*argv, *options, "--score", "variation_ratio"]) == 2
    err = capsys.readouterr().err
    assert "a segmentation model abstains on mean_mutual_information" in err
    assert main([*argv, *options, "--retained-accuracy", "0.9"]) == 2
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert (
        main(["calibrate", "unet", "--models-dir", str(root), "--data", str(tmp_path / "bad.npz")])
        == 2
    )
    assert "not an .npz file of 'inputs'" in capsys.readouterr().err


def test_chunked_calibration_gives_the_same_threshold(
    root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("app.commands.calibrate.IMAGE_CHUNK", 7)  # 20 images: 7 + 7 + 6
    argv = ["calibrate", "unet", "--models-dir", str(root), "--data", str(root / "eval.npz")]
    options = ["--refer", "0.2", "--n-samples", str(N), "--seed", str(SEED), "--dry-run"]
    assert main([*argv, *options, "--json"]) == 0
    chunked = json.loads(capsys.readouterr().out)["threshold"]
    # The same masks per (seed, pass); only a batched convolution's rounding may differ.
    assert chunked == pytest.approx(_abstention(root)["threshold"], rel=1e-5)
