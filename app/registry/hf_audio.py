"""A Hugging Face audio-classifier folder -> a network on the feature rows its own feature
extractor makes (Wav2Vec2 / HuBERT: normalised waveforms (B, S); AST: filterbank frames
(B, T, n_mels)), every dropout sampled (attention, feature projection and LayerDrop included)
or only the last encoder layer's (``mc_dropout: head``). See :mod:`app.registry.hf_audio_models`
for the families and what each randomness source becomes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from app.engine.dropout import DropoutLayer, find_dropout_layers
from app.engine.prefix import ModelSplit
from app.engine.selection import DropoutChoice, select_dropout
from app.errors import ModelLoadError
from app.registry.hf_audio_models import (
    AUDIO_EXTRA,
    AudioArchitecture,
    PretrainedAudioClassifier,
    head_sites,
    load_audio_pretrained,
    staged_split,
)
from app.registry.huggingface import attention_sites, require_transformers
from app.registry.network import DropoutSite, describe_sites


@dataclass(frozen=True)
class SampledAudioClassifier:
    """A folder's classifier with its sampled sites, split and what is not sampled."""

    classifier: PretrainedAudioClassifier
    layers: list[DropoutLayer]
    sites: list[DropoutSite]
    split: ModelSplit
    warnings: list[str]

    @property
    def architecture(self) -> AudioArchitecture:
        return self.classifier.architecture


def sampled_audio_classifier(
    path: Path,
    choice: DropoutChoice,
    name: str,
    share: Mapping[str, Sequence[int]] | None = None,
) -> SampledAudioClassifier:
    """The folder's model, the dropout ``choice`` samples (``head``: the last encoder layer's
    sites) and the split that runs the stages before the first sampled one once per row."""
    model, architecture, warnings = load_audio_pretrained(path)
    classifier = PretrainedAudioClassifier(model, architecture).eval()
    found = find_dropout_layers(model)
    layers = select_dropout(found, choice, head_sites(classifier, found), name, share)
    attention = attention_sites(model)
    sampled_attention = any(layer.name in attention for layer in layers)
    if not sampled_attention:
        cast(Any, model).set_attn_implementation("sdpa")  # no attention dropout: the fast kernel
    return SampledAudioClassifier(
        classifier=classifier,
        layers=layers,
        sites=describe_sites(found, layers, attention),
        split=staged_split(classifier, layers),
        warnings=warnings,
    )


def load_feature_extractor(path: Path) -> Any:
    """The folder's feature extractor (``preprocessor_config.json``), loaded offline."""
    try:
        transformers = require_transformers()
    except ModelLoadError:
        raise ModelLoadError(f"{path}: this model needs transformers: {AUDIO_EXTRA}") from None
    if not (path / "preprocessor_config.json").is_file():
        raise ModelLoadError(f"{path}: no preprocessor_config.json (the feature extractor)")
    try:
        return transformers.AutoFeatureExtractor.from_pretrained(
            path, local_files_only=True, trust_remote_code=False
        )
    except Exception as exc:  # transformers raises many kinds for a bad extractor config
        raise ModelLoadError(f"{path}: cannot load the feature extractor: {exc}") from exc
