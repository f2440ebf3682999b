"""Segmentation U-Nets (a Python file, TorchScript) against their own torch MC dropout: the
served per-pixel mean probabilities, std and mutual information within MC error, and a
reference with another dropout rate told apart (the power check)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.engine.predictor import PredictionRequest
from app.registry.loading import load_model_folder
from tests.moments import Z, assert_moments_match, differences, moments
from tests.segmentation_models import images, unet, write_unet_folder
from tests.stochastic_models import torch_mc_dropout

PASSES = 400


def _pixels(probs: torch.Tensor) -> torch.Tensor:
    """(N, B, C, H, W) -> (N, B * H * W, C): one classification per pixel."""
    n, _, c = probs.shape[:3]
    return probs.movedim(2, -1).reshape(n, -1, c)


@pytest.mark.parametrize(
    ("torchscript", "mc_dropout"),
    [(False, "all"), (False, ["decoder_drop", "head_drop"]), (True, "all")],
    ids=["python-file", "decoder-only", "torchscript"],
)
def test_a_unet_matches_its_own_torch_mc_dropout(
    tmp_path: Path, torchscript: bool, mc_dropout: object
) -> None:
    kwargs = {"p": 0.3, "bottleneck_p": 0.0 if mc_dropout != "all" else 0.2}
    folder = write_unet_folder(
        tmp_path, kwargs=kwargs, torchscript=torchscript, mc_dropout=mc_dropout
    )
    model = load_model_folder(folder)
    x = images(2)
    served = torch.softmax(model.predictor.sampler.sample(x, PASSES, seed=5).double(), dim=2)
    reference = torch.softmax(torch_mc_dropout(unet(folder, **kwargs), x, PASSES).double(), 2)
    assert_moments_match(_pixels(served), _pixels(reference))
    wrong = torch_mc_dropout(unet(folder, **{**kwargs, "p": 0.6}), x, PASSES)
    found = differences(
        moments(_pixels(served)), moments(_pixels(torch.softmax(wrong.double(), 2)))
    )
    assert max(found.values()) > Z, f"p = 0.6 not told apart from 0.3: {found}"
    if mc_dropout != "all":
        assert model.split.prefix_fraction > 0.5  # the encoder runs once per image


def test_served_statistics_are_those_of_the_passes(tmp_path: Path) -> None:
    model = load_model_folder(write_unet_folder(tmp_path, kwargs={"p": 0.3}))
    x = images(2)
    prediction = model.predictor.predict(PredictionRequest(x, 64, 0.9, seed=7))
    probs = torch.softmax(model.predictor.sampler.sample(x, 64, seed=7), dim=2)
    torch.testing.assert_close(prediction.stats.mean, probs.mean(dim=0), atol=1e-6, rtol=0)
    areas = torch.nn.functional.one_hot(probs.argmax(2).flatten(2), 2).sum(2).double()
    torch.testing.assert_close(prediction.stats.area_mean, areas.mean(0).float())


def test_a_regression_card_on_a_dense_output_is_refused_at_load(tmp_path: Path) -> None:
    from app.errors import ModelLoadError

    folder = write_unet_folder(tmp_path, task="classification")
    with pytest.raises(ModelLoadError) as refused:
        load_model_folder(folder)
    assert "(B, 2, 16, 16)" in refused.value.message
