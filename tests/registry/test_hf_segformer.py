"""Hugging Face SegformerForSemanticSegmentation from a tiny random config saved with
save_pretrained: served as ``task: segmentation`` at the input's size, against its own torch MC
dropout (head dropout, drop path, hidden and attention dropout), and ``mc_dropout: head``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import nn
from torch.nn import functional as F

from app.errors import ModelLoadError
from app.registry.loading import load_model_folder
from tests.moments import Z, assert_moments_match, differences, moments
from tests.stochastic_models import torch_mc_dropout

transformers = pytest.importorskip("transformers")
SIZE = 32
PASSES = 300
CONFIG: dict[str, Any] = {
    "num_encoder_blocks": 2,
    "depths": [1, 1],
    "sr_ratios": [2, 1],
    "hidden_sizes": [8, 16],
    "patch_sizes": [7, 3],
    "strides": [4, 2],
    "num_attention_heads": [1, 2],
    "mlp_ratios": [2, 2],
    "decoder_hidden_size": 16,
    "classifier_dropout_prob": 0.3,
    "drop_path_rate": 0.3,
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "id2label": {0: "background", 1: "lesion"},
    "label2id": {"background": 0, "lesion": 1},
}


def _folder(root: Path, name: str = "segformer", **card: Any) -> Path:
    folder = root / name
    torch.manual_seed(0)
    model = transformers.SegformerForSemanticSegmentation(transformers.SegformerConfig(**CONFIG))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    model.eval().save_pretrained(folder, safe_serialization=True)
    size = {"height": SIZE, "width": SIZE}
    transformers.SegformerImageProcessorPil(size=size).save_pretrained(folder)
    document = {
        "name": name,
        "task": "segmentation",
        "input": {"type": "image"},
        "architecture": {"huggingface": "."},
        **card,
    }
    (folder / "model.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return folder


class _Reference(nn.Module):
    """The folder's model as transformers runs it (eager attention), logits upsampled."""

    def __init__(self, folder: Path, **config: Any) -> None:
        super().__init__()
        self.model = transformers.SegformerForSemanticSegmentation.from_pretrained(
            folder, attn_implementation="eager", **config
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(pixel_values=x).logits
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _pixels(raw: torch.Tensor) -> torch.Tensor:
    probs = torch.softmax(raw.double(), dim=2)
    return probs.movedim(2, -1).reshape(probs.shape[0], -1, probs.shape[2])


def _rows() -> torch.Tensor:
    return torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))


def test_segformer_matches_its_own_torch_mc_dropout(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    model = load_model_folder(folder)
    assert model.output_shape == [2, SIZE, SIZE] and model.card.labels == ["background", "lesion"]
    kinds = {site.role for site in model.dropout_sites if site.sampled}
    assert "attention" in kinds
    assert any("drop_path" in s.name and s.p > 0 for s in model.dropout_sites if s.sampled)
    x = _rows()
    served = model.predictor.sampler.sample(x, PASSES, seed=2)
    reference = torch_mc_dropout(_Reference(folder), x, PASSES)
    assert_moments_match(_pixels(served), _pixels(reference))
    wrong = torch_mc_dropout(
        _Reference(folder, classifier_dropout_prob=0.0, drop_path_rate=0.0), x, PASSES
    )
    found = differences(moments(_pixels(served)), moments(_pixels(wrong)))
    assert max(found.values()) > Z, f"less dropout not told apart: {found}"


def test_head_samples_the_decode_heads_dropout_and_runs_the_rest_once(tmp_path: Path) -> None:
    folder = _folder(tmp_path, mc_dropout="head")
    model = load_model_folder(folder)
    assert [layer.name for layer in model.dropout_layers] == ["decode_head.dropout"]
    assert model.split.reason.startswith("Hugging Face split: the encoder and decode head")
    x = _rows()
    served = model.predictor.sampler.sample(x, PASSES, seed=2)
    head_only = {"drop_path_rate": 0.0, "hidden_dropout_prob": 0.0}
    reference_net = _Reference(folder, **head_only, attention_probs_dropout_prob=0.0)
    reference = torch_mc_dropout(reference_net, x, PASSES)
    assert_moments_match(_pixels(served), _pixels(reference))


def test_a_segformer_folder_needs_task_segmentation(tmp_path: Path) -> None:
    folder = _folder(tmp_path, task="classification")
    with pytest.raises(ModelLoadError) as refused:
        load_model_folder(folder)
    assert "needs task: segmentation" in refused.value.message
