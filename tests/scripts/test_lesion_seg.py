"""The segmentation demo ``lesion-seg``: its synthetic scans are the script's, its training is
deterministic, and the shipped model loads and answers its samples as the README says."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from app.config import load_settings
from app.main import create_app
from app.registry.loading import load_model_folder
from tests.support import BUNDLED_MODELS, load_script

demo = load_script("train_lesion_seg")
FOLDER = BUNDLED_MODELS / "lesion-seg"
SAMPLES = FOLDER / "samples"


def test_the_card_matches_the_weights_and_the_script() -> None:
    model = load_model_folder(FOLDER)  # the card's sha256 is checked on load
    assert model.card.task == "segmentation" and model.card.training["script"] == demo.SCRIPT
    assert model.card.architecture.kwargs == demo.KWARGS
    assert (FOLDER / "model.safetensors").stat().st_size < 2_000_000


def test_scans_are_seeded_and_varied() -> None:
    pixels, masks = demo.scans(7, 6)
    again, again_masks = demo.scans(7, 6)
    assert np.array_equal(pixels, again) and np.array_equal(masks, again_masks)
    assert not np.array_equal(pixels, demo.scans(8, 6)[0])
    assert pixels.shape == (6, 64, 64) and pixels.dtype == np.uint8
    assert set(np.unique(masks)) <= {0, 1} and 0 < masks.mean() < 0.2


def test_the_shipped_samples_are_the_scripts() -> None:
    for stem, pixels in demo.sample_scans().items():
        shipped = np.asarray(Image.open(SAMPLES / f"{stem}.png"))
        assert np.array_equal(shipped, pixels), stem
    from app.engine.dicom import encode_dicom

    assert (SAMPLES / "easy.dcm").read_bytes() == encode_dicom(demo.sample_scans()["easy"])


def test_training_is_deterministic() -> None:
    first, _ = demo.train(epochs=1, train_scans=32, test_scans=2)
    second, _ = demo.train(epochs=1, train_scans=32, test_scans=2)
    for (name, a), (_, b) in zip(
        first.state_dict().items(), second.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("models")
    shutil.copytree(FOLDER, root / "lesion-seg")
    with TestClient(create_app(load_settings(models_dir=root))) as started:
        yield started


def _answer(client: TestClient, name: str) -> dict[str, Any]:
    files = [("image", (name, (SAMPLES / name).read_bytes(), "application/octet-stream"))]
    form = {"n_samples": "30", "seed": "0"}
    response = client.post("/v1/models/lesion-seg/predict", files=files, data=form)
    assert response.status_code == 200, response.text
    row: dict[str, Any] = response.json()["predictions"][0]
    return row


def _boundary(mask: np.ndarray, reach: int = 2) -> np.ndarray:
    """Pixels within ``reach`` of a change of class in the mask."""
    from numpy.lib.stride_tricks import sliding_window_view

    windows = sliding_window_view(np.pad(mask, reach, mode="edge"), (2 * reach + 1,) * 2)
    band: np.ndarray = windows.max(axis=(-1, -2)) != windows.min(axis=(-1, -2))
    return band


def _lesion(row: dict[str, Any]) -> dict[str, Any]:
    area: dict[str, Any] = row["areas"][1]
    assert area["label"] == "lesion"
    return area


def test_the_easy_scan_is_uncertain_only_on_its_boundary(client: TestClient) -> None:
    row = _answer(client, "easy.png")
    information = np.array(row["maps"]["mutual_information"])
    band = _boundary(np.array(row["maps"]["mask"]))
    assert (information * band).sum() / information.sum() > 0.8
    assert not ((information > row["uncertainty_threshold"]) & ~band).any()
    lesion = _lesion(row)
    assert (
        150 < lesion["pixels"] < 300 and lesion["upper"] - lesion["lower"] < 0.3 * lesion["pixels"]
    )
    assert row["foreground_mutual_information"] < 0.05


def test_low_contrast_and_out_of_distribution_are_flagged(client: TestClient) -> None:
    easy, faint = _answer(client, "easy.png"), _answer(client, "low-contrast.png")
    unseen = _answer(client, "out-of-distribution.png")
    assert faint["foreground_mutual_information"] > 3 * easy["foreground_mutual_information"]
    width = _lesion(faint)["upper"] - _lesion(faint)["lower"]
    assert width > _lesion(faint)["pixels"]  # the interval is wider than the area itself
    assert unseen["mean_mutual_information"] > 10 * easy["mean_mutual_information"]
    assert unseen["uncertain_share"] > 10 * easy["uncertain_share"]


def test_the_dicom_sample_answers_as_its_png(client: TestClient) -> None:
    assert _answer(client, "easy.dcm") == _answer(client, "easy.png")
