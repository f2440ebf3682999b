"""A Hugging Face audio-classifier folder -> a network on the feature rows its own feature
extractor makes (Wav2Vec2 / HuBERT: normalised waveforms (B, S); AST: filterbank frames
(B, T, n_mels)), every dropout sampled (attention, feature projection and LayerDrop included)
or only the last encoder layer's output dropout (``mc_dropout: head``). See
:mod:`app.registry.hf_audio_models` for the families and what each randomness source becomes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from app.engine.audio import require_audio
from app.engine.dropout import DropoutLayer, find_dropout_layers
from app.engine.prefix import ModelSplit
from app.engine.selection import DropoutChoice, select_dropout
from app.errors import ModelLoadError
from app.inputs.audio import AudioKind
from app.inputs.audio_features import AudioFeatures, max_samples
from app.registry.card import ModelCard
from app.registry.card_inputs import AudioInputSpec
from app.registry.hf_audio_models import (
    AUDIO_EXTRA,
    AudioArchitecture,
    PretrainedAudioClassifier,
    head_sites,
    load_audio_pretrained,
    staged_split,
)
from app.registry.huggingface import (
    attention_sites,
    config_labels,
    hf_folder,
    require_transformers,
)
from app.registry.network import DropoutSite, Network, describe_sites
from app.registry.served import LoadOptions
from app.registry.text import SMALLEST_BUCKET, TOKENS_PER_CHUNK

PROBE_ROWS = 2


class ExtractorAudioKind(AudioKind):
    """The audio kind of a Hugging Face folder: its forward calls fold at most
    ``TOKENS_PER_CHUNK`` encoder frames (rows x the frames of the longest clip), as text
    models do, so attention weights and masks (rows, heads, frames, frames) stay bounded."""

    def __init__(self, spec: AudioInputSpec, features: AudioFeatures, frames: int) -> None:
        super().__init__(spec, features)
        self.frames = frames

    def chunk_rows(self, max_rows: int) -> int:
        return max(SMALLEST_BUCKET, min(max_rows, TOKENS_PER_CHUNK // max(self.frames, 1)))


def encoder_frames(model: Any, architecture: AudioArchitecture, features: AudioFeatures) -> int:
    """Positions the encoder attends over for the longest row: conv frames of the longest
    waveform (Wav2Vec2, HuBERT), or patches plus the two tokens (AST)."""
    if architecture.features == "waveform":
        assert features.max_length is not None
        return int(model._get_feat_extract_output_lengths(features.max_length))
    embeddings = getattr(model, architecture.base).embeddings
    frequency, time = embeddings.get_shape(model.config)
    return int(frequency * time) + 2


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
    masked: bool = False,
) -> SampledAudioClassifier:
    """The folder's model, the dropout ``choice`` samples (``head``: the last encoder layer's
    output dropout and LayerDrop) and the split that runs the stages before the first sampled
    one once per row.
    ``masked``: a waveform model takes packed ``[length, *waveform]`` rows and attention
    masks (its feature extractor returns them)."""
    model, architecture, warnings = load_audio_pretrained(path)
    masked = masked and architecture.features == "waveform"
    classifier = PretrainedAudioClassifier(model, architecture, masked).eval()
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


@dataclass(frozen=True)
class ExtractorStep:
    """A feature extractor on one waveform -> its row (float32). A class, not a closure: it
    travels (pickled) to the HTTP workers of an inference process with the model's kind."""

    extractor: Any
    rate: int

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        found = self.extractor(wave, sampling_rate=self.rate, return_tensors="np")
        return np.asarray(found["input_values"][0], dtype=np.float32)


def extractor_features(
    extractor: Any, spec: AudioInputSpec, architecture: AudioArchitecture, path: Path
) -> AudioFeatures:
    """The folder's feature extractor as the audio kind's feature step: Wav2Vec2's normalised
    waveform (rows [S], padded with its ``padding_value``) or AST's filterbank (rows
    [max_length, num_mel_bins], a fixed shape)."""
    rate = int(extractor.sampling_rate)
    if rate != spec.sample_rate:
        raise ModelLoadError(
            f"{path}: the feature extractor reads {rate} Hz audio, the card says "
            f"input.sample_rate {spec.sample_rate}"
        )
    compute = ExtractorStep(extractor, rate)
    name = type(extractor).__name__
    normalised = bool(getattr(extractor, "do_normalize", False))
    if architecture.features == "waveform":
        return AudioFeatures(
            name="extractor",
            compute=compute,
            shape=[-1],
            max_length=max_samples(spec),
            pad=float(getattr(extractor, "padding_value", 0.0)),
            summary=f"{name}: the waveform" + (", normalised" if normalised else ""),
            parameters={"extractor": name},
        )
    frames, bands = int(extractor.max_length), int(extractor.num_mel_bins)
    return AudioFeatures(
        name="extractor",
        compute=compute,
        shape=[frames, bands],
        max_length=None,
        pad=0.0,
        summary=f"{name}: {bands}-band filterbank, {frames} frames (cut or padded)",
        parameters={"extractor": name, "num_mel_bins": bands, "max_length": frames},
    )


def load_audio_classifier(card: ModelCard, folder: Path, options: LoadOptions) -> Network:
    """Model, feature extractor and dropout sites of the card's Hugging Face audio folder."""
    spec = card.input
    assert card.architecture.huggingface is not None and isinstance(spec, AudioInputSpec)
    if spec.features not in ("waveform", "extractor"):
        raise ModelLoadError(
            f"model '{card.name}': a Hugging Face audio folder reads its own feature extractor's "
            "output; leave input.features out (or give features: extractor)"
        )
    if card.task != "classification":
        raise ModelLoadError(f"model '{card.name}': Hugging Face audio folders are classifiers")
    try:
        require_audio()
    except ModelLoadError as exc:
        raise ModelLoadError(f"model '{card.name}': {exc.message}") from None
    path = hf_folder(folder, card.architecture.huggingface)
    extractor = load_feature_extractor(path)
    masked = bool(getattr(extractor, "return_attention_mask", False))
    parts = sampled_audio_classifier(path, card.mc_dropout, card.name, card.dropout_share, masked)
    features = extractor_features(extractor, spec, parts.architecture, path)
    lengths = parts.classifier.masked  # the kind packs each clip's true length in front
    spec = spec.model_copy(update={"features": "extractor", "lengths": lengths})
    if card.labels is None:
        card = card.model_copy(update={"labels": config_labels(parts.classifier.model.config)})
    card = card.model_copy(update={"input": spec})
    kind = ExtractorAudioKind(
        spec, features, encoder_frames(parts.classifier.model, parts.architecture, features)
    )
    classifier = parts.classifier.to(options.device, options.dtype)
    return Network(
        card=card,
        module=classifier,
        module_prefix="model.",
        layers=parts.layers,
        sites=parts.sites,
        split=parts.split,
        probe=kind.probe(PROBE_ROWS).to(options.device, options.dtype),
        input_kind=kind,
        warnings=parts.warnings,
    )
