"""Which dropout is sampled, for every model: functional dropout reached through the fx graph,
and the card's mc_dropout (all | head | names)."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from app.engine.sampling import SampleJob
from app.errors import ModelLoadError
from app.registry.loading import load_model_folder
from app.registry.served import ServedModel

SOURCE = textwrap.dedent(
    '''
    import torch
    from torch import nn
    from torch.nn import functional as F


    class EvalIdiom(nn.Module):
        """Linear -> F.dropout(training=self.training) -> Linear -> Dropout -> Linear."""

        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 8)
            self.b = nn.Linear(8, 8)
            self.drop = nn.Dropout(0.3)
            self.c = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = F.dropout(torch.relu(self.a(x)), 0.4, training=self.training)
            return self.c(self.drop(torch.relu(self.b(h))))


    class AlwaysOn(EvalIdiom):
        """The MC-dropout idiom F.dropout(..., training=True), functional dropout only."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = F.dropout(torch.relu(self.a(x)), p=0.4, training=True)
            return self.c(torch.relu(self.b(h)))


    class Untraceable(EvalIdiom):
        """Data-dependent control flow: torch.fx cannot trace it."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 1e9:
                x = x * 2
            h = F.dropout(torch.relu(self.a(x)), 0.4, training=self.training)
            return self.c(self.drop(torch.relu(self.b(h))))
    '''
)


def _folder(root: Path, cls: str, **card: object) -> Path:
    folder = root / cls.lower()
    folder.mkdir(parents=True)
    (folder / "net.py").write_text(SOURCE)
    torch.manual_seed(0)
    state = {
        "a.weight": torch.randn(8, 4),
        "a.bias": torch.randn(8),
        "b.weight": torch.randn(8, 8),
        "b.bias": torch.randn(8),
        "c.weight": torch.randn(3, 8),
        "c.bias": torch.randn(3),
    }
    save_file(state, str(folder / "model.safetensors"))
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    document = {
        "name": cls.lower(),
        "task": "classification",
        "input": {"shape": [4]},
        "architecture": {"file": "net.py", "class": cls},
        "weights": {"file": "model.safetensors", "sha256": digest},
        **card,
    }
    (folder / "model.yaml").write_text(yaml.safe_dump(document))
    return folder


def _passes(model: ServedModel, seed: int = 5, n: int = 8) -> torch.Tensor:
    x = torch.linspace(-1, 1, 12).view(3, 4)
    return model.predictor.sampler.sample_jobs([SampleJob(x, n, seed)])[0]


def test_functional_dropout_with_training_self_training_is_sampled(tmp_path: Path) -> None:
    model = load_model_folder(_folder(tmp_path, "EvalIdiom", mc_dropout=["functional:dropout"]))
    sampled = [site for site in model.dropout_sites if site.sampled]
    assert [(s.name, s.role, s.p) for s in sampled] == [("functional:dropout", "functional", 0.4)]
    passes = _passes(model)
    assert not torch.equal(passes[0], passes[1])
    assert torch.equal(passes, _passes(model))
    assert model.warnings == []


def test_training_true_idiom_is_seeded_not_left_to_the_global_generator(tmp_path: Path) -> None:
    model = load_model_folder(_folder(tmp_path, "AlwaysOn"))
    assert [layer.name for layer in model.dropout_layers] == ["functional:dropout"]
    torch.manual_seed(1)
    first = _passes(model)
    torch.manual_seed(2)
    assert torch.equal(first, _passes(model))
    assert not torch.equal(first[0], first[1])
    with torch.inference_mode():  # outside a run the call is the identity (eval semantics)
        x = torch.ones(2, 4)
        assert torch.equal(model.split.suffix(_Off(), *model.split.prefix(x)), _eval(model, x))


class _Off:
    @staticmethod
    def apply(index: int, x: torch.Tensor) -> torch.Tensor:
        return x


def _eval(model: ServedModel, x: torch.Tensor) -> torch.Tensor:
    module = model.module
    h = torch.relu(module.get_submodule("a")(x))
    out: torch.Tensor = module.get_submodule("c")(torch.relu(module.get_submodule("b")(h)))
    return out


def test_functional_and_module_dropout_alone_equals_fused(tmp_path: Path) -> None:
    model = load_model_folder(_folder(tmp_path, "EvalIdiom"))
    assert len(model.dropout_layers) == 2
    x = torch.linspace(-1, 1, 12).view(3, 4)
    sampler = model.predictor.sampler
    alone = sampler.sample_jobs([SampleJob(x, 20, 9)])[0]
    fused = sampler.sample_jobs([SampleJob(x[:1] * 3, 7, 1), SampleJob(x, 20, 9)])[1]
    assert torch.equal(alone, fused)


def test_untraceable_functional_dropout_is_refused_unless_acknowledged(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as refused:
        load_model_folder(_folder(tmp_path / "off", "Untraceable"))
    assert "the model's own forward (Untraceable)" in refused.value.message
    assert "unsampled: [forward]" in refused.value.message
    assert "mc_dropout: {modules" not in refused.value.message
    model = load_model_folder(_folder(tmp_path, "Untraceable", unsampled=["forward"]))
    assert [layer.name for layer in model.dropout_layers] == ["drop"]
    assert model.audit is not None and model.warnings == []
    assert [(u.name, u.acknowledged) for u in model.audit.unsampled] == [("", True)]


def test_head_samples_only_the_last_dropout_and_runs_the_rest_once(tmp_path: Path) -> None:
    model = load_model_folder(_folder(tmp_path, "EvalIdiom", mc_dropout="head"))
    assert [layer.name for layer in model.dropout_layers] == ["drop"]
    assert {s.name: s.sampled for s in model.dropout_sites} == {
        "drop": True,
        "functional:dropout": False,
    }
    assert model.split.prefix_fraction > 0.5  # a and b run once per row
    passes = _passes(model)
    assert not torch.equal(passes[0], passes[1])


def test_head_of_a_bundled_cnn_is_its_classifier_dropout() -> None:
    from tests.support import BUNDLED_MODELS

    folder = BUNDLED_MODELS / "digits-cnn"
    model = load_model_folder(folder)
    assert [layer.name for layer in model.dropout_layers] == ["head.3"]


def test_head_without_dropout_after_the_backbone_is_refused(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "EvalIdiom", mc_dropout=["nope"])
    with pytest.raises(ModelLoadError, match="unknown dropout sites nope"):
        load_model_folder(folder)
