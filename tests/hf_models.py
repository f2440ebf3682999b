"""Tiny random-weight Hugging Face text classifiers written as mcdrop model folders (offline)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch
import yaml

from tests.support import load_script

CORPUS = [
    "the service was quick and the staff were kind",
    "the parcel arrived late and the box was broken",
    "a calm evening by the river with friends",
    "the engine failed twice on the motorway today",
    "great food, friendly people, would come again",
    "nobody answered the phone for three days",
]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@functools.cache
def wordpiece_tokenizer(vocab_size: int = 120) -> Any:
    """A fast BERT-style tokenizer with a small WordPiece vocabulary trained on CORPUS."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIALS)
    tokenizer.train_from_iterator(CORPUS, trainer)
    return load_script("train_text_demo").bert_fast_tokenizer(tokenizer)  # the demo's wrapper


def _config(kind: str, labels: dict[str, Any] | None = None, **dropout: float) -> Any:
    import transformers

    common: dict[str, Any] = {"vocab_size": 120, "pad_token_id": 0}
    labels = labels or {"id2label": {0: "neg", 1: "neutral", 2: "pos"}}
    if kind == "distilbert":
        return transformers.DistilBertConfig(
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=64,
            max_position_embeddings=64,
            dropout=dropout.get("hidden", 0.1),
            attention_dropout=dropout.get("attention", 0.1),
            seq_classif_dropout=dropout.get("classifier", 0.1),
            **common,
            **labels,
        )
    config_class = {
        "bert": transformers.BertConfig,
        "roberta": transformers.RobertaConfig,
        "deberta-v2": transformers.DebertaV2Config,
    }[kind]
    extra: dict[str, Any] = {}
    if kind == "deberta-v2":
        extra = {
            "relative_attention": True,
            "pos_att_type": ["c2p", "p2c"],
            "type_vocab_size": 2,
            "position_buckets": 8,
            "max_relative_positions": 16,
            "pooler_dropout": dropout.get("classifier", 0.1),
        }
    if kind == "roberta":
        common["pad_token_id"] = 0
    return config_class(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=66,
        hidden_dropout_prob=dropout.get("hidden", 0.1),
        attention_probs_dropout_prob=dropout.get("attention", 0.1),
        classifier_dropout=dropout.get("classifier", 0.1),
        **common,
        **labels,
        **extra,
    )


def write_text_model(
    models_dir: Path,
    name: str = "tiny-text",
    kind: str = "bert",
    card: dict[str, Any] | None = None,
    seed: int = 0,
    head: str = "Sequence",
    labels: dict[str, Any] | None = None,
    **dropout: float,
) -> Path:
    """A save_pretrained folder with random weights (``seed``), tokenizer and model.yaml.

    ``dropout`` sets ``hidden``, ``attention`` and ``classifier`` probabilities (0.1 each);
    ``head`` is ``Sequence`` or ``Token`` (``*ForTokenClassification``); ``labels`` are config
    fields (``id2label``, ``problem_type``) replacing the three sentiment labels."""
    import transformers

    config = _config(kind, labels, **dropout)
    architecture = {
        "bert": "Bert",
        "distilbert": "DistilBert",
        "roberta": "Roberta",
        "deberta-v2": "DebertaV2",
    }[kind] + f"For{head}Classification"
    torch.manual_seed(seed)
    model = getattr(transformers, architecture)(config).eval()
    folder = models_dir / name
    model.save_pretrained(folder)
    wordpiece_tokenizer().save_pretrained(folder)
    document: dict[str, Any] = {
        "name": name,
        "task": "classification",
        "input": {"type": "text", "max_length": 32},
        "architecture": {"huggingface": "."},
        "n_samples": {"default": 8, "max": 64},
        **(card or {}),
    }
    (folder / "model.yaml").write_text(yaml.safe_dump(document))
    return folder
