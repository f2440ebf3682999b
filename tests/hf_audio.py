"""Tiny random-weight Hugging Face audio classifiers (Wav2Vec2, HuBERT, AST) saved with their
feature extractors as ``save_pretrained`` folders (offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

LABELS = {"id2label": {0: "yes", 1: "no", 2: "noise"}}
SAMPLE_RATE = 16_000
CLASSES = {
    "wav2vec2": "Wav2Vec2ForSequenceClassification",
    "hubert": "HubertForSequenceClassification",
    "ast": "ASTForAudioClassification",
}


def audio_config(kind: str, **options: Any) -> Any:
    """A tiny config of ``kind`` (hidden 32, 2 layers, a small conv feature encoder), every
    dropout 0.1 unless ``options`` say otherwise."""
    import transformers

    common: dict[str, Any] = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "initializer_range": 0.2,  # logits of order one: passes that visibly differ
        **LABELS,
    }
    if kind == "ast":
        settings: dict[str, Any] = {
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
            "patch_size": 8,
            "frequency_stride": 8,
            "time_stride": 8,
            "max_length": 48,
            "num_mel_bins": 16,
        }
        return transformers.ASTConfig(**{**common, **settings, **options})
    settings = {
        "conv_dim": (16, 16, 16),
        "conv_kernel": (10, 8, 4),
        "conv_stride": (5, 8, 8),  # 320 samples a frame, as in wav2vec2-base: 50 frames a second
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 2,
        "classifier_proj_size": 16,
        "feat_proj_dropout": 0.1,
        "hidden_dropout": 0.1,
        "activation_dropout": 0.1,
        "attention_dropout": 0.1,
        "layerdrop": 0.0,
        "mask_time_prob": 0.0,
    }
    config_class = transformers.Wav2Vec2Config if kind == "wav2vec2" else transformers.HubertConfig
    return config_class(**{**common, **settings, **options})


def feature_extractor(kind: str, masks: bool = False) -> Any:
    """The folder's feature extractor: Wav2Vec2's normalising one (returning attention masks
    with ``masks``), or AST's filterbank."""
    import transformers

    if kind == "ast":
        return transformers.ASTFeatureExtractor(num_mel_bins=16, max_length=48)  # type: ignore[no-untyped-call]
    return transformers.Wav2Vec2FeatureExtractor(  # type: ignore[no-untyped-call]
        sampling_rate=SAMPLE_RATE, do_normalize=True, return_attention_mask=masks
    )


LAYER_NORM: dict[str, Any] = {
    "feat_extract_norm": "layer",
    "do_stable_layer_norm": True,
    "conv_bias": True,
}
"""A wav2vec2-large-lv60-style model, batched with attention masks."""


def save_audio_model(
    folder: Path, kind: str, *, seed: int = 0, masks: bool = False, **options: Any
) -> Path:
    """A random-weight ``kind`` classifier and its feature extractor saved into ``folder``;
    ``masks``: a layer-norm model whose extractor returns attention masks."""
    import transformers

    torch.manual_seed(seed)
    config = audio_config(kind, **(LAYER_NORM if masks else {}), **options)
    model = getattr(transformers, CLASSES[kind])(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    feature_extractor(kind, masks).save_pretrained(folder)
    return folder


def write_audio_model(
    root: Path, name: str, kind: str, card: dict[str, Any] | None = None, **options: Any
) -> Path:
    """An mcdrop model folder ``root/name`` serving a tiny ``kind`` Hugging Face folder."""
    folder = save_audio_model(root / name, kind, **options)
    document = {
        "name": name,
        "version": "1",
        "task": "classification",
        "input": {"type": "audio", "sample_rate": SAMPLE_RATE, "max_seconds": 2},
        "architecture": {"huggingface": "."},
        "n_samples": {"default": 8},
        **(card or {}),
    }
    (folder / "model.yaml").write_text(yaml.safe_dump(document))
    return folder


def tones(rows: int, seconds: float = 0.5, seed: int = 0) -> np.ndarray:
    """(rows, samples) float32 test sounds: a tone of its own pitch plus a little noise each."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    pitches = 220.0 * 2 ** (np.arange(rows) / 3)
    sound = 0.5 * np.sin(2 * np.pi * pitches[:, None] * t) + 0.05 * rng.standard_normal(
        (rows, t.size)
    )
    return sound.astype(np.float32)
