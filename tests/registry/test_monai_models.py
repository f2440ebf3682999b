"""MONAI UNet and BasicUNet (``architecture: {monai: ...}``) against their own torch MC dropout,
and ``mc_dropout: head`` sampling the decoder alone with the encoder run once."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import save_file
from torch import nn

from app.errors import ModelLoadError
from app.registry.loading import load_model_folder
from tests.moments import Z, assert_moments_match, differences, moments
from tests.segmentation_models import SIZE, images
from tests.stochastic_models import torch_mc_dropout

nets = pytest.importorskip("monai.networks.nets")

KWARGS: dict[str, dict[str, Any]] = {
    "UNet": {
        "spatial_dims": 2,
        "in_channels": 1,
        "out_channels": 2,
        "channels": [4, 8, 16],
        "strides": [2, 2],
        "num_res_units": 1,
        "dropout": 0.2,
    },
    "BasicUNet": {
        "spatial_dims": 2,
        "in_channels": 1,
        "out_channels": 2,
        "features": [4, 4, 8, 8, 16, 4],
        "dropout": 0.2,
    },
}
PASSES = 300
SIZES = {"UNet": SIZE, "BasicUNet": 32}
"""BasicUNet halves four times, and instance norm needs more than one pixel at the bottom."""


def _network(name: str, **overrides: Any) -> nn.Module:
    torch.manual_seed(0)
    network: nn.Module = getattr(nets, name)(**{**KWARGS[name], **overrides})
    return network.eval()


def _folder(root: Path, name: str, **card: Any) -> Path:
    folder = root / name
    folder.mkdir()
    save_file(
        {k: v.contiguous() for k, v in _network(name).state_dict().items()},
        str(folder / "w.safetensors"),
    )
    digest = hashlib.sha256((folder / "w.safetensors").read_bytes()).hexdigest()
    document = {
        "name": name.lower(),
        "task": "segmentation",
        "input": {"shape": [1, SIZES[name], SIZES[name]]},
        "architecture": {"monai": name, "kwargs": KWARGS[name]},
        "weights": {"file": "w.safetensors", "sha256": digest},
        **card,
    }
    (folder / "model.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return folder


def _pixels(probs: torch.Tensor) -> torch.Tensor:
    return probs.movedim(2, -1).reshape(probs.shape[0], -1, probs.shape[2])


@pytest.mark.parametrize("name", ["UNet", "BasicUNet"])
def test_a_monai_network_matches_its_own_torch_mc_dropout(tmp_path: Path, name: str) -> None:
    model = load_model_folder(_folder(tmp_path, name))
    x = images(2, size=SIZES[name])
    served = torch.softmax(model.predictor.sampler.sample(x, PASSES, seed=3).double(), 2)
    reference = torch.softmax(torch_mc_dropout(_network(name), x, PASSES).double(), 2)
    assert_moments_match(_pixels(served), _pixels(reference))
    wrong = torch.softmax(torch_mc_dropout(_network(name, dropout=0.5), x, PASSES).double(), 2)
    found = differences(moments(_pixels(served)), moments(_pixels(wrong)))
    assert max(found.values()) > Z, f"dropout 0.5 not told apart from 0.2: {found}"


@pytest.mark.parametrize("name", ["UNet", "BasicUNet"])
def test_head_samples_the_decoder_and_runs_the_encoder_once(tmp_path: Path, name: str) -> None:
    model = load_model_folder(_folder(tmp_path, name, mc_dropout="head"))
    sampled = [site.name for site in model.dropout_sites if site.sampled]
    assert sampled and all(
        ("upcat_" in s) or (".2." in s or s.startswith("model.2")) for s in sampled
    )
    assert not any(s.startswith(("down_", "conv_0")) for s in sampled)
    assert model.split.prefix_fraction > 0.3, model.split.reason
    x = images(2, size=SIZES[name])
    served = torch.softmax(model.predictor.sampler.sample(x, PASSES, seed=1).double(), 2)
    reference_net = _network(name)
    for site, module in reference_net.named_modules():  # the encoder's dropout off
        if isinstance(module, nn.Dropout) and site not in sampled:
            module.p = 0.0
    reference = torch.softmax(torch_mc_dropout(reference_net, x, PASSES).double(), 2)
    assert_moments_match(_pixels(served), _pixels(reference))


def test_an_unknown_monai_network_is_refused_naming_the_supported_ones(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "UNet")
    card = yaml.safe_load((folder / "model.yaml").read_text())
    card["architecture"]["monai"] = "SwinUNETR"
    (folder / "model.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(ModelLoadError) as refused:
        load_model_folder(folder)
    assert "SwinUNETR" in refused.value.message and "BasicUNet" in refused.value.message
