"""Hugging Face audio classifiers: Wav2Vec2 and HuBERT ``*ForSequenceClassification`` on
waveforms, the Audio Spectrogram Transformer (``ASTForAudioClassification``) on filterbank
frames, loaded offline from ``save_pretrained`` folders, every randomness source of their
forward sampled or named.

Their dropout, and what mcdrop does with each:
- feature-projection dropout (``feat_proj_dropout``), the encoder's input dropout, hidden,
  activation and output dropout (``hidden_dropout``, ``activation_dropout``): dropout modules,
  sampled;
- attention-probability dropout (``attention_dropout``; AST ``attention_probs_dropout_prob``):
  applied functionally by transformers, so each attention module gets an ``nn.Dropout`` that
  mcdrop's attention function (:mod:`app.registry.huggingface`) applies, sampled;
- LayerDrop (``layerdrop``: in training mode a whole encoder layer is skipped with that
  probability, one draw per forward call): sampled, as one seeded keep/skip per layer and pass
  shared by the rows of a request (:class:`SampledLayerDrop`), like stochastic depth in images:
  it is part of the network the model was trained as, and a pass of its own MC dropout skips
  layers;
- SpecAugment (``mask_time_prob``, ``mask_feature_prob``): training-time data augmentation of
  the features, drawn with numpy's global generator; not sampled (off, as in eval mode) and
  named in the model's warnings;
- ``final_dropout`` is read by the CTC heads only: these classifiers have no dropout after the
  encoder. So ``mc_dropout: head`` samples the network's last dropout: the last encoder layer's
  feed-forward output dropout (and its LayerDrop); Wav2Vec2 / HuBERT run that layer as two
  stages cut there, so everything before it runs once per row (AST, whose layer applies one
  dropout module twice, samples its whole last layer).

The model runs as a list of stages (:mod:`app.registry.hf_audio_stages`: the conv feature
encoder, the projection, the encoder's input, each layer, the head): the stages before the
first one holding a sampled dropout run once per row (the conv feature encoder always: it holds
no dropout), the rest once per sample. A model whose extractor returns attention masks
(layer-norm Wav2Vec2 / HuBERT) takes packed ``[length, *waveform]`` rows and gets the masks.
``use_weighted_layer_sum`` models are refused (their head reads every layer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from app.engine.compiled import DropoutApplier
from app.engine.dropout import DropoutLayer
from app.engine.prefix import ModelSplit
from app.errors import ModelLoadError
from app.registry.hf_audio_stages import (
    SampledLayerDrop,
    Stage,
    State,
    run_stages,
    spectrogram_stages,
    speech_stages,
)
from app.registry.huggingface import from_pretrained, require_transformers

AUDIO_EXTRA = 'pip install "mcdrop[audio]"'


@dataclass(frozen=True)
class AudioArchitecture:
    """How mcdrop runs one transformers audio classifier."""

    base: str
    """Attribute holding the base model."""
    stages: Callable[[Any, str], list[Stage]]
    """(model, base) -> its forward as stages, head last."""
    features: str
    """What the model reads: ``waveform`` (B, S) or ``filterbank`` (B, T, n_mels)."""


SUPPORTED: dict[str, AudioArchitecture] = {
    "Wav2Vec2ForSequenceClassification": AudioArchitecture("wav2vec2", speech_stages, "waveform"),
    "HubertForSequenceClassification": AudioArchitecture("hubert", speech_stages, "waveform"),
    "ASTForAudioClassification": AudioArchitecture(
        "audio_spectrogram_transformer", spectrogram_stages, "filterbank"
    ),
}
"""transformers class name -> how to run it."""


class PretrainedAudioClassifier(nn.Module):
    """A transformers audio classifier run stage by stage: features (B, S) waveform or
    (B, T, n_mels) filterbank -> logits (B, C). With ``masked`` the rows are packed
    ``[length, *waveform]`` (B, 1 + S) and the model gets the attention mask of each row's
    true samples. The same numbers as the model's own eval forward."""

    def __init__(
        self, model: nn.Module, architecture: AudioArchitecture, masked: bool = False
    ) -> None:
        super().__init__()
        self.model = model
        self.architecture = architecture
        self.masked = masked
        self.stages = architecture.stages(model, architecture.base)

    def state(self, x: Tensor) -> State:
        """The first stage's state of input rows x."""
        if not self.masked:
            return (x,)
        return (x[:, 1:], x[:, 0].round().to(torch.long))

    def forward(self, x: Tensor) -> Tensor:
        return run_stages(self.stages, self.state(x))[0]


def load_audio_pretrained(path: Path) -> tuple[nn.Module, AudioArchitecture, list[str]]:
    """The folder's model in eval mode with mcdrop's attention function, its attention dropout
    and LayerDrop as sampled modules, and warnings naming what is not sampled."""
    try:
        transformers = require_transformers()
    except ModelLoadError:
        raise ModelLoadError(f"{path}: this model needs transformers: {AUDIO_EXTRA}") from None
    model, architecture = from_pretrained(
        transformers,
        path,
        SUPPORTED,
        lambda arch: True,
        kind=" for audio",
        check=lambda declared: None,
    )
    config: Any = model.config
    if getattr(config, "use_weighted_layer_sum", False):
        raise ModelLoadError(
            f"{path}: use_weighted_layer_sum models (the head reads every layer's output) are "
            "not supported yet; mcdrop serves classifiers reading the last layer"
        )
    _make_dropout_modules(model, float(getattr(config, "layerdrop", 0.0) or 0.0))
    return model.eval(), architecture, _unsampled(config)


def _make_dropout_modules(model: nn.Module, layerdrop: float) -> None:
    """Attention modules get the ``dropout`` module mcdrop's attention function applies (their
    own p), encoder layers a :class:`SampledLayerDrop` when the config has LayerDrop."""
    for module in list(model.modules()):
        kind = type(module).__name__
        if kind.endswith("Attention") and not isinstance(
            getattr(module, "dropout", None), nn.Module
        ):
            p = getattr(module, "attention_dropout", getattr(module, "dropout", 0.0))
            module.dropout = nn.Dropout(float(p or 0.0))
        elif layerdrop > 0 and kind.endswith(("EncoderLayer", "EncoderLayerStableLayerNorm")):
            module.layerdrop = SampledLayerDrop(layerdrop)


def _unsampled(config: Any) -> list[str]:
    """Warnings for randomness of the model's training mode that mcdrop leaves off."""
    if not getattr(config, "apply_spec_augment", False):
        return []
    time, feature = (
        float(getattr(config, k, 0.0) or 0.0) for k in ("mask_time_prob", "mask_feature_prob")
    )
    if time <= 0 and feature <= 0:
        return []
    return [
        f"SpecAugment masking (mask_time_prob {time}, mask_feature_prob {feature}) is "
        "training-time augmentation drawn with numpy's global generator: not sampled (off, as "
        "in eval mode)"
    ]


def head_sites(classifier: PretrainedAudioClassifier, found: Sequence[DropoutLayer]) -> set[str]:
    """The sites ``mc_dropout: head`` samples: those of the last stage before the head (these
    classifiers have no dropout after the encoder): the last layer's output dropout and
    LayerDrop where that layer is cut in two, else the whole last layer's."""
    stages = classifier.stages
    last = next(i for i in range(len(stages) - 1, -1, -1) if stages[i].name != "head")
    return {layer.name for layer in found if any(s.holds(layer.name) for s in stages[last:])}


def staged_split(
    classifier: PretrainedAudioClassifier, layers: Sequence[DropoutLayer]
) -> ModelSplit:
    """The stages before the first one holding a sampled site once per row (prefix), the rest
    per sample (suffix; the sampler hooks the dropout modules)."""
    stages = classifier.stages
    names = [layer.name for layer in layers]
    first = next(
        (i for i, stage in enumerate(stages) if any(stage.holds(n) for n in names)),
        len(stages) - 1,
    )
    before, after = stages[:first], stages[first:]

    def prefix(x: Tensor) -> tuple[Tensor, ...]:
        return run_stages(before, classifier.state(x))

    def suffix(dropout: DropoutApplier, *values: Tensor) -> Tensor:
        return run_stages(after, values)[0]

    model = classifier.model
    total = sum(p.numel() for p in model.parameters())
    once = {p for stage in before for m in stage.modules for p in _parameters(model, m)}
    share = sum(p.numel() for p in once) / max(total, 1)
    ran = ", ".join(stage.name for stage in before) or "nothing"
    reason = f"Hugging Face audio split: {ran} once per row, from {stages[first].name} per sample"
    return ModelSplit(prefix, suffix, round(share, 4), reason)


def _parameters(model: nn.Module, name: str) -> list[nn.Parameter]:
    try:
        return list(model.get_submodule(name).parameters())
    except AttributeError:
        return []
