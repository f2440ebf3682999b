"""Hugging Face folders of the new tasks: multi-label from ``problem_type`` and
``*ForTokenClassification``, each served moment against the model's own torch MC dropout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from app.api.native import prediction_rows
from app.engine.predictor import PredictionRequest
from app.errors import ModelLoadError
from app.inputs.text import TextKind
from app.registry.loading import load_model_folder
from app.registry.served import ServedModel
from app.tasks.multilabel import MultilabelRow
from app.tasks.token_classification import WORD_FIRST, TokenRow
from tests.hf_models import write_text_model
from tests.moments import assert_moments_match
from tests.stochastic_models import torch_mc_dropout

pytest.importorskip("transformers")

PASSES = 1000
TEXTS = ["the parcel arrived at motorwayville today", "kind staff, quick service"]
TAGS = {"id2label": {0: "O", 1: "PER", 2: "LOC"}}
KINDS = ["bert", "distilbert", "roberta", "deberta-v2"]


class _Reference(nn.Module):
    """The folder's transformers model on packed rows, its own dropout in training mode
    (DeBERTa's position-table dropout stays off: mcdrop lists it as unsampled)."""

    def __init__(self, folder: Path, class_name: str, token_types: bool) -> None:
        import transformers

        super().__init__()
        cls = getattr(transformers, class_name)
        self.model = cls.from_pretrained(folder, attn_implementation="eager").eval()
        self.token_types = token_types

    def train(self, mode: bool = True) -> _Reference:
        super().train(mode)
        for name, module in self.named_modules():
            if name.endswith("pos_dropout"):
                module.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        extra = {"token_type_ids": x[:, 2]} if self.token_types else {}
        logits: Tensor = self.model(input_ids=x[:, 0], attention_mask=x[:, 1], **extra).logits
        return logits


def _served(model: ServedModel, x: Tensor) -> Tensor:
    request = PredictionRequest(x, PASSES, 0.9, seed=3, return_samples=True)
    samples = model.predictor.predict(request).samples
    assert samples is not None
    return samples


def _class_name(kind: str, head: str) -> str:
    prefix = {"bert": "Bert", "distilbert": "DistilBert", "roberta": "Roberta"}
    return prefix.get(kind, "DebertaV2") + f"For{head}Classification"


@pytest.mark.parametrize("kind", KINDS)
def test_token_moments_match_the_models_own_mc_dropout(tmp_path: Path, kind: str) -> None:
    folder = write_text_model(tmp_path, f"tags-{kind}", kind=kind, head="Token", labels=TAGS)
    model = load_model_folder(folder)
    assert model.card.task == "token_classification" and model.card.labels == ["O", "PER", "LOC"]
    x = model.rows_to_tensor(TEXTS, 4)
    words = x[:, WORD_FIRST].bool()
    served = _served(model, x)[:, words]  # (N, words, C): padding and specials left out
    reference_net = _Reference(folder, _class_name(kind, "Token"), kind in ("bert", "deberta-v2"))
    reference = torch.softmax(torch_mc_dropout(reference_net, x, PASSES).double(), -1)[:, words]
    assert_moments_match(served, reference)


def test_offsets_point_at_whole_words_split_into_sub_tokens(tmp_path: Path) -> None:
    folder = write_text_model(tmp_path, "tags", head="Token", labels=TAGS)
    model = load_model_folder(folder)
    text = "The parcel reached Motorwayville, late."
    assert isinstance(model.input_kind, TextKind)
    pieces = model.input_kind.encoder.tokenizer.tokenize("motorwayville")
    assert len(pieces) > 1, "the test needs a word of several sub-tokens"
    x = model.rows_to_tensor([text], 1)
    prediction = model.predictor.predict(PredictionRequest(x, 8, 0.9, seed=1))
    (row,) = prediction_rows(model, prediction, [text])
    assert isinstance(row, TokenRow)
    assert [(t.text, t.start, t.end) for t in row.tokens] == [
        ("The", 0, 3),
        ("parcel", 4, 10),
        ("reached", 11, 18),
        ("Motorwayville", 19, 32),
        (",", 32, 33),
        ("late", 34, 38),
        (".", 38, 39),
    ]
    assert all(t.label in ("O", "PER", "LOC") for t in row.tokens)
    # The entries are the first sub-tokens: the word's later pieces are not reported.
    assert int(x[0, WORD_FIRST].sum()) == 7 < int(x[0, 1].sum()) - 2


def _multilabel_folder(tmp_path: Path, bias: float) -> Path:
    labels = {
        "id2label": {0: "billing", 1: "paperwork"},
        "problem_type": "multi_label_classification",
    }
    folder = write_text_model(tmp_path, "tags", labels=labels)
    weights = load_file(str(folder / "model.safetensors"))
    weights["classifier.bias"] = torch.full((2,), bias)  # the model's own sigmoid: ~0.99 or 0.01
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def test_multilabel_bert_is_a_sigmoid_per_label_matching_its_mc_dropout(tmp_path: Path) -> None:
    folder = _multilabel_folder(tmp_path, 4.6)
    model = load_model_folder(folder)
    assert model.card.task == "multilabel"
    x = model.rows_to_tensor(TEXTS, 4)
    served = _served(model, x)
    reference_net = _Reference(folder, "BertForSequenceClassification", True)
    reference = torch.sigmoid(torch_mc_dropout(reference_net, x, PASSES).double())
    assert_moments_match(_as_binary(served), _as_binary(reference))
    prediction = model.predictor.predict(PredictionRequest(x, 64, 0.9, seed=1))
    rows = prediction_rows(model, prediction)
    for row in rows:
        assert isinstance(row, MultilabelRow)
        assert all(p > 0.98 for p in row.mean)  # a softmax would split them near 0.5
        assert row.predicted_labels == ["billing", "paperwork"]


def test_a_text_with_no_tags_gets_no_label(tmp_path: Path) -> None:
    model = load_model_folder(_multilabel_folder(tmp_path, -4.6))
    x = model.rows_to_tensor(TEXTS[:1], 1)
    (row,) = prediction_rows(model, model.predictor.predict(PredictionRequest(x, 32, 0.9, seed=1)))
    assert isinstance(row, MultilabelRow)
    assert row.predicted_labels == [] and max(row.mean) < 0.05


def _as_binary(probs: Tensor) -> Tensor:
    """(N, B, K) label probabilities as (N, B * K, 2) two-class distributions (binary moments)."""
    p = probs.double().reshape(probs.shape[0], -1)
    return torch.stack([1.0 - p, p], dim=-1)


def test_a_card_naming_another_task_than_the_folder_is_refused(tmp_path: Path) -> None:
    card: dict[str, Any] = {"task": "multilabel"}
    folder = write_text_model(tmp_path, "tags", head="Token", labels=TAGS, card=card)
    with pytest.raises(ModelLoadError, match=r"card says task multilabel, but .* holds a token"):
        load_model_folder(folder)
