from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from app.engine.predictor import PredictionRequest
from app.engine.stats import ClassificationStats, RegressionStats
from app.errors import ModelLoadError
from app.registry.card import read_card
from app.registry.loading import load_model_folder
from app.registry.torch_loader import sha256_of
from tests.support import BUNDLED_MODELS, tiny_state

Factory = Callable[..., Path]


def _edit_card(folder: Path, **changes: object) -> None:
    card = yaml.safe_load((folder / "model.yaml").read_text())
    card.update(changes)
    (folder / "model.yaml").write_text(yaml.safe_dump(card))


def test_loads_a_python_file_architecture_with_fixed_weights(model_factory: Factory) -> None:
    model = load_model_folder(model_factory())
    assert (model.name, model.version, model.output_shape) == ("tiny", "3", [2])
    assert [layer.name for layer in model.dropout_layers] == ["drop"]
    with torch.no_grad():
        y = model.module(torch.tensor([[1.0, -2.0]]))
    assert y.tolist() == [[3.0, -3.0]]  # y = 2x + 1


def test_regression_predictions_with_fixed_tau(model_factory: Factory) -> None:
    model = load_model_folder(model_factory(task="regression"))
    for layer in model.dropout_layers:
        layer.module.p = 0.0  # type: ignore[assignment]
    request = PredictionRequest(torch.tensor([[1.0, 2.0]]), n_samples=10, ci_level=0.9, seed=0)
    stats = model.predictor.predict(request).stats
    assert isinstance(stats, RegressionStats)
    assert stats.mean.tolist() == [[3.0, 5.0]]
    assert stats.epistemic_variance.tolist() == [[0.0, 0.0]]
    assert stats.aleatoric_variance.tolist() == [[0.25, 0.25]]  # 1 / tau, tau = 4


def test_classification_predictions_sum_to_one(model_factory: Factory) -> None:
    model = load_model_folder(model_factory())
    request = PredictionRequest(torch.randn(5, 2), n_samples=50, ci_level=0.95, seed=1)
    stats = model.predictor.predict(request).stats
    assert isinstance(stats, ClassificationStats)
    torch.testing.assert_close(stats.mean.sum(-1), torch.ones(5))


def test_state_dict_weights_load_with_weights_only(model_factory: Factory) -> None:
    folder = model_factory()
    torch.save(tiny_state(), folder / "model.pt")
    _edit_card(folder, weights={"file": "model.pt", "sha256": sha256_of(folder / "model.pt")})
    assert load_model_folder(folder).output_shape == [2]


def test_pickled_objects_are_refused(model_factory: Factory) -> None:
    folder = model_factory()
    torch.save({"inp.weight": nn.Linear(2, 2)}, folder / "model.pt")
    _edit_card(folder, weights={"file": "model.pt", "sha256": sha256_of(folder / "model.pt")})
    with pytest.raises(ModelLoadError, match="cannot load weights"):
        load_model_folder(folder)


def test_torchscript_archive(model_factory: Factory, tmp_path: Path) -> None:
    folder = model_factory()
    loaded = load_model_folder(folder)
    loaded.predictor.sampler.close()
    plain = loaded.module
    torch.jit.save(torch.jit.script(plain), str(folder / "model.ts"))
    _edit_card(folder, architecture={"torchscript": "model.ts"}, weights={})
    model = load_model_folder(folder)
    request = PredictionRequest(torch.randn(3, 2), n_samples=40, ci_level=0.9, seed=2)
    first = model.predictor.predict(request)
    again = model.predictor.predict(request)
    assert isinstance(first.stats, ClassificationStats)
    assert torch.equal(first.stats.mean, again.stats.mean)


def test_traced_torchscript_is_refused_with_the_reason(model_factory: Factory) -> None:
    folder = model_factory()
    loaded = load_model_folder(folder)
    loaded.predictor.sampler.close()
    traced = torch.jit.trace(loaded.module, torch.randn(3, 2))  # type: ignore[no-untyped-call]
    torch.jit.save(traced, str(folder / "model.ts"))
    _edit_card(folder, architecture={"torchscript": "model.ts"}, weights={})
    with pytest.raises(ModelLoadError) as error:
        load_model_folder(folder)
    assert "traced with torch.jit.trace: dropout is fixed in the graph" in error.value.message
    assert "export with torch.jit.script" in error.value.message and "p = 0" not in str(error)


def test_checksum_mismatch_is_refused(model_factory: Factory) -> None:
    folder = model_factory()
    _edit_card(folder, weights={"file": "model.safetensors", "sha256": "0" * 64})
    with pytest.raises(ModelLoadError, match="sha256 mismatch"):
        load_model_folder(folder)


def test_model_without_dropout_is_refused(model_factory: Factory) -> None:
    folder = model_factory(
        cls="NoDropoutNet", state={"inp.weight": torch.eye(2), "inp.bias": torch.zeros(2)}
    )
    with pytest.raises(ModelLoadError, match="no dropout module"):
        load_model_folder(folder)


def test_zero_p_dropout_is_refused(model_factory: Factory) -> None:
    with pytest.raises(ModelLoadError, match="p = 0"):
        load_model_folder(model_factory(kwargs={"p": 0.0}))


def test_files_outside_the_folder_are_refused(model_factory: Factory) -> None:
    folder = model_factory()
    _edit_card(folder, architecture={"file": "../net.py", "class": "TinyNet"})
    with pytest.raises(ModelLoadError, match="outside the model folder"):
        load_model_folder(folder)


def test_labels_must_match_outputs(model_factory: Factory) -> None:
    folder = model_factory(card={"labels": ["a", "b", "c"]})
    with pytest.raises(ModelLoadError, match="3 labels but 2 outputs"):
        load_model_folder(folder)


def test_wrong_input_shape_fails_the_probe(model_factory: Factory) -> None:
    folder = model_factory(card={"input": {"shape": [5]}})
    with pytest.raises(ModelLoadError, match="forward pass on input shape"):
        load_model_folder(folder)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"task": "ranking"}, "task"),
        ({"architecture": {"bundled": "x", "file": "y"}}, "exactly one of"),
        ({"n_samples": {"default": 10, "max": 5}}, "exceeds max"),
        ({"regression": {"tau": 1.0}}, "classification model"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_invalid_cards_name_the_problem(
    model_factory: Factory, changes: dict[str, object], message: str
) -> None:
    folder = model_factory()
    _edit_card(folder, **changes)
    with pytest.raises(ModelLoadError, match=message):
        read_card(folder)


@pytest.mark.parametrize("name", ["digits-mlp", "digits-cnn", "diabetes-mlp"])
def test_bundled_demo_models_load(name: str) -> None:
    model = load_model_folder(BUNDLED_MODELS / name)
    assert model.name == name
    assert model.dropout_layers
