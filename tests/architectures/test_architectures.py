"""Bundled architectures and the shipped demo models in `models/`."""

from __future__ import annotations

import hashlib
import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

from app.architectures import (
    BUNDLED,
    DigitsCNN,
    DropoutMLP,
    Standardize,
    build_bundled,
)
from app.architectures.layers import Destandardize

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
SCRIPT = REPO / "scripts" / "train_demo_models.py"
SHIPPED = ["digits-mlp", "digits-cnn", "diabetes-mlp"]
CARD_KEYS = ["name", "version", "task", "description", "input", "labels", "architecture"]
CARD_KEYS += ["weights", "n_samples", "regression", "feature_names", "value_range", "training"]
PASSES = 100


@pytest.fixture(scope="module")
def script() -> ModuleType:
    """The training script as a module (for its split functions), without running it."""
    spec = importlib.util.spec_from_file_location("train_demo_models", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def _card(name: str) -> dict[str, Any]:
    card: dict[str, Any] = yaml.safe_load((MODELS / name / "model.yaml").read_text())
    return card


def _load(name: str) -> nn.Module:
    card = _card(name)
    model = build_bundled(card["architecture"]["bundled"], card["architecture"]["kwargs"])
    state = load_file(str(MODELS / name / card["weights"]["file"]))
    model.load_state_dict(state, strict=True)
    return model.eval()


def _mc_dropout(model: nn.Module) -> nn.Module:
    """Eval mode with only the dropout modules sampling."""
    model.eval()
    for module in model.modules():
        if isinstance(module, _DropoutNd):
            module.train()
    return model


@torch.no_grad()
def _mc_passes(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    _mc_dropout(model)
    torch.manual_seed(0)
    return torch.stack([model(x) for _ in range(PASSES)])


@pytest.mark.parametrize("name", SHIPPED)
def test_card_builds_and_loads_weights_strictly(name: str) -> None:
    card = _card(name)
    assert card["name"] == name
    assert list(card) == [key for key in CARD_KEYS if key in card]
    assert ("labels" in card) == (card["task"] == "classification")
    assert ("regression" in card) == (card["task"] == "regression")
    model = _load(name)
    x = torch.zeros(2, *card["input"]["shape"])
    out_width = len(card["labels"]) if card["task"] == "classification" else 1
    assert model(x).shape == (2, out_width)


@pytest.mark.parametrize("name", SHIPPED)
def test_card_sha256_matches_weights(name: str) -> None:
    weights = _card(name)["weights"]
    data = (MODELS / name / weights["file"]).read_bytes()
    assert len(data) < 1_000_000
    assert hashlib.sha256(data).hexdigest() == weights["sha256"]


@pytest.mark.parametrize("name", ["digits-mlp", "digits-cnn"])
def test_digits_models_mc_accuracy_on_held_out_split(name: str, script: ModuleType) -> None:
    _, x_test, _, y_test = (torch.from_numpy(a) for a in script.digits_split())
    x = x_test.view(-1, *_card(name)["input"]["shape"])
    model = _load(name)
    probs = _mc_passes(model, x).softmax(dim=-1).mean(dim=0)
    accuracy = float((probs.argmax(dim=-1) == y_test).float().mean())
    assert not any(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert len(y_test) == _card(name)["training"]["n_test"] == 450
    assert accuracy >= 0.95


def test_diabetes_model_rmse_and_tau(script: ModuleType) -> None:
    *_, x_test, _, _, y_test = (torch.from_numpy(a) for a in script.diabetes_split())
    card = _card("diabetes-mlp")
    samples = _mc_passes(_load("diabetes-mlp"), x_test)[..., 0]
    rmse = float(((samples.mean(dim=0) - y_test) ** 2).mean().sqrt())
    # Outputs are in target units (y spans ~25..346); a linear fit gets ~56 on this split.
    assert rmse < 60.0
    assert samples.std(dim=0).mean() > 0.0
    tau = card["regression"]["tau"]
    assert 1e-5 < tau < 1e-2
    assert rmse == pytest.approx(card["training"]["test_rmse"], abs=0.5)


def _fresh(cls: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    if cls is DigitsCNN:
        return DigitsCNN()
    return DropoutMLP(6, [8, 8], 3, p=0.2, variance_head=True, output_standardize=True)


@pytest.mark.parametrize("cls", list(BUNDLED.values()))
def test_symbolic_trace_matches_eager_in_eval(cls: type[nn.Module]) -> None:
    model = _fresh(cls).eval()
    x = torch.rand(4, 1, 8, 8) * 16 if cls is DigitsCNN else torch.randn(4, 6)
    traced = torch.fx.symbolic_trace(model)
    torch.testing.assert_close(traced(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_models_trace_and_match(name: str) -> None:
    model = _load(name)
    x = torch.rand(3, *_card(name)["input"]["shape"]) * 16
    torch.testing.assert_close(torch.fx.symbolic_trace(model)(x), model(x), rtol=0, atol=0)


def test_digits_cnn_dropout_only_in_head() -> None:
    # The serving engine runs everything before the first dropout once per request.
    model = DigitsCNN()
    order = list(model.modules())
    dropouts = [i for i, m in enumerate(order) if isinstance(m, _DropoutNd)]
    assert len(dropouts) == 1 and any(m is order[dropouts[0]] for m in model.head)
    assert not any(isinstance(m, nn.Conv2d | nn.BatchNorm2d) for m in order[dropouts[0] :])


def test_standardize_standardises_and_destandardize_inverts() -> None:
    x = torch.tensor([[1.0, 10.0], [3.0, 30.0], [5.0, 50.0]])
    layer = Standardize(2)
    layer.set_statistics(x.mean(dim=0), x.std(dim=0))
    z = layer(x)
    torch.testing.assert_close(z, torch.tensor([[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0]]))
    inverse = Destandardize(2)
    inverse.set_statistics(x.mean(dim=0), x.std(dim=0))
    torch.testing.assert_close(inverse(z), x)
    assert set(layer.state_dict()) == {"mean", "std"}


def test_standardize_rejects_bad_statistics() -> None:
    layer = Standardize(2)
    with pytest.raises(ValueError, match="positive"):
        layer.set_statistics(torch.zeros(2), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="shape"):
        layer.set_statistics(torch.zeros(3), torch.ones(3))


def test_variance_head_outputs_target_units() -> None:
    model = _fresh(DropoutMLP).eval()
    assert isinstance(model, DropoutMLP) and model.destandardize is not None
    model.destandardize.set_statistics(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0] * 3))
    x = torch.randn(5, 6)
    raw = model.head(model.body(model.standardize(x)))
    out = model(x)
    assert out.shape == (5, 6)
    torch.testing.assert_close(out[:, :3], raw[:, :3] * 2.0 + torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(out[:, 3:], raw[:, 3:] + 2.0 * math.log(2.0))


def test_build_bundled_unknown_name_lists_known_names() -> None:
    with pytest.raises(KeyError) as caught:
        build_bundled("resnet", {})
    assert isinstance(caught.value, ValueError)
    assert "digits_cnn" in str(caught.value) and "dropout_mlp" in str(caught.value)
    with pytest.raises(ValueError, match="kwargs"):
        build_bundled("dropout_mlp", {"nope": 1})
