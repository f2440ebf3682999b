"""The segmentation demo ``lesion-seg``: its synthetic scans are the script's, its training is
deterministic, and the shipped model loads and answers its samples as the README says."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from app.engine.predictor import PredictionRequest
from app.registry.loading import load_model_folder
from app.registry.served import ServedModel
from tests.support import BUNDLED_MODELS, load_script

demo = load_script("train_lesion_seg")
FOLDER = BUNDLED_MODELS / "lesion-seg"
SAMPLES = FOLDER / "samples"


@pytest.fixture(scope="module")
def model() -> ServedModel:
    return load_model_folder(FOLDER)  # the card's sha256 is checked on load


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


def _answer(model: ServedModel, name: str) -> dict:
    data = (SAMPLES / name).read_bytes()
    inputs = model.input_kind.rows([data], 1)
    request = PredictionRequest(inputs, n_samples=30, ci_level=0.95, seed=0)
    prediction = model.predictor.predict(request)
    from app.tasks import RowContext

    (row,) = model.predictor.task.rows(prediction, RowContext(labels=model.card.labels))
    return row.model_dump()
