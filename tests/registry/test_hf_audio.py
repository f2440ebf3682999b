"""Hugging Face audio classifiers (Wav2Vec2, HuBERT, AST): tiny random-weight folders built
here, every dropout sampled and checked against the model's own torch MC dropout."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from app.engine.sampler import MCSampler
from app.engine.sampling import SampleJob
from app.errors import ModelLoadError
from app.registry.hf_audio import (
    SampledAudioClassifier,
    load_feature_extractor,
    sampled_audio_classifier,
)
from tests.hf_audio import CLASSES, LAYER_NORM, SAMPLE_RATE, save_audio_model, tones
from tests.moments import Z, assert_moments_match, differences, moments, probabilities
from tests.stochastic_models import torch_mc_dropout

transformers = pytest.importorskip("transformers")

PASSES = 1000
LAYERDROP_PASSES = 400
KINDS = ["wav2vec2", "hubert", "ast"]
DROPOUT: dict[str, dict[str, Any]] = {"wav2vec2": {"layerdrop": 0.2}, "hubert": {}, "ast": {}}


def _features(folder: Path, rows: int = 2) -> Tensor:
    extractor = load_feature_extractor(folder)
    sounds = list(tones(rows, seconds=0.5))
    values = extractor(sounds, sampling_rate=SAMPLE_RATE, return_tensors="np")["input_values"]
    return torch.tensor(values)


def _served(parts: SampledAudioClassifier, x: Tensor, n: int = PASSES, seed: int = 3) -> Tensor:
    sampler = MCSampler(parts.classifier, parts.layers, max_rows=256, split=parts.split)
    try:
        (logits,) = sampler.sample_jobs([SampleJob(x, n, seed)])
    finally:
        sampler.close()
    return logits


class _Reference(nn.Module):
    """The folder's transformers model with eager attention, its own dropout (functional
    attention dropout and LayerDrop included) in training mode."""

    def __init__(self, folder: Path, kind: str) -> None:
        super().__init__()
        cls = getattr(transformers, CLASSES[kind])
        self.model = cls.from_pretrained(folder, attn_implementation="eager").eval()

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.model(input_values=x).logits
        return logits


def _reference(folder: Path, kind: str, x: Tensor, layerdrop: bool) -> Tensor:
    """(N, B, C) logits of the model's own MC dropout; LayerDrop draws one skip per forward
    call, so then one pass per call (fewer of them: one call per pass is slow)."""
    network = _Reference(folder, kind)
    if layerdrop:
        return torch_mc_dropout(network, x, LAYERDROP_PASSES, per_call=1)
    return torch_mc_dropout(network, x, PASSES)


@pytest.mark.parametrize("kind", KINDS)
def test_served_moments_match_the_models_own_mc_dropout(tmp_path: Path, kind: str) -> None:
    folder = save_audio_model(tmp_path / kind, kind, **DROPOUT[kind])
    parts = sampled_audio_classifier(folder, "all", kind)
    roles = {site.role for site in parts.sites if site.sampled}
    assert roles == {"attention", "hidden"}
    x = _features(folder)
    served = probabilities(_served(parts, x))
    reference = probabilities(_reference(folder, kind, x, bool(DROPOUT[kind])))
    assert_moments_match(served, reference)


def test_attention_dropout_left_out_would_be_caught(tmp_path: Path) -> None:
    # power: with only attention dropout, a sampler missing it would give no spread at all,
    # and one sampling every site but attention differs from the reference beyond MC error
    folder = save_audio_model(
        tmp_path / "w",
        "wav2vec2",
        attention_dropout=0.5,
        hidden_dropout=0.05,
        activation_dropout=0.05,
        feat_proj_dropout=0.05,
    )
    x = _features(folder)
    reference = moments(probabilities(_reference(folder, "wav2vec2", x, False)))
    every = sampled_audio_classifier(folder, "all", "w")
    names = [layer.name for layer in every.layers if not layer.name.endswith("attention.dropout")]
    without = sampled_audio_classifier(folder, names, "w")
    assert max(differences(moments(probabilities(_served(every, x))), reference).values()) < Z
    assert max(differences(moments(probabilities(_served(without, x))), reference).values()) > Z


def test_layerdrop_left_out_would_be_caught(tmp_path: Path) -> None:
    folder = save_audio_model(tmp_path / "h", "hubert", layerdrop=0.5, hidden_dropout=0.02)
    x = _features(folder)
    reference = moments(probabilities(_reference(folder, "hubert", x, True)))
    parts = sampled_audio_classifier(folder, "all", "h")
    names = [layer.name for layer in parts.layers if "layerdrop" not in layer.name]
    assert len(names) < len(parts.layers)
    without = sampled_audio_classifier(folder, names, "h")
    assert max(differences(moments(probabilities(_served(parts, x))), reference).values()) < Z
    assert max(differences(moments(probabilities(_served(without, x))), reference).values()) > Z


def test_the_conv_feature_encoder_runs_once_per_row_for_every_site(tmp_path: Path) -> None:
    folder = save_audio_model(tmp_path / "w", "wav2vec2")
    parts = sampled_audio_classifier(folder, "all", "w")
    assert parts.layers[0].name == "wav2vec2.feature_projection.dropout"
    assert parts.split.reason.startswith("Hugging Face audio split: conv features once per row")
    calls = _count_calls(parts, "wav2vec2.feature_extractor", _features(folder, 3), n=40)
    assert calls == [3], "one conv pass over the 3 rows, not 40 x 3"


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert", "stable"])
def test_head_mode_runs_the_last_layer_to_its_output_dropout_once_per_row(
    tmp_path: Path, kind: str
) -> None:
    family = "wav2vec2" if kind == "stable" else kind
    options = LAYER_NORM if kind == "stable" else DROPOUT[kind]
    folder = save_audio_model(tmp_path / kind, family, **options)
    parts = sampled_audio_classifier(folder, "head", kind)
    last = f"{family}.encoder.layers.1"
    expected = {f"{last}.feed_forward.output_dropout"}
    if options.get("layerdrop"):
        expected.add(f"{last}.layerdrop.dropout")
    assert {layer.name for layer in parts.layers} == expected
    x = _features(folder, 2)
    once_per_row = (f"{family}.encoder.layers.0", f"{last}.attention")
    for once in (*once_per_row, f"{last}.feed_forward.output_dense"):
        assert _count_calls(parts, once, x, n=30) == [2], f"{once}: once per row"
    folded = _count_calls(parts, f"{last}.feed_forward.output_dropout", x, n=30)
    assert len(folded) == 1 and folded[0] >= 60, "the output dropout: 30 x 2 folded rows"
    assert _count_calls(parts, "classifier", x, n=30) == folded


@pytest.mark.parametrize("kind", ["wav2vec2", "stable"])
def test_head_moments_match_the_models_own_mc_dropout_on_that_site(
    tmp_path: Path, kind: str
) -> None:
    options = LAYER_NORM if kind == "stable" else {}
    folder = save_audio_model(tmp_path / kind, "wav2vec2", hidden_dropout=0.3, **options)
    parts = sampled_audio_classifier(folder, "head", kind)
    (site,) = (layer.name for layer in parts.layers)
    x = _features(folder)
    served = moments(probabilities(_served(parts, x)))
    reference = _OneSiteReference(folder, "wav2vec2", site)
    own = moments(probabilities(torch_mc_dropout(reference, x, PASSES)))
    assert max(differences(served, own).values()) < Z
    # power: the whole last layer sampled (the old head) is another distribution
    whole = [layer.name for layer in sampled_audio_classifier(folder, "all", kind).layers]
    last = sampled_audio_classifier(folder, [n for n in whole if ".layers.1." in n], kind)
    assert max(differences(moments(probabilities(_served(last, x))), own).values()) > Z


class _OneSiteReference(_Reference):
    """The model's own forward with only dropout module ``site`` in training mode."""

    def __init__(self, folder: Path, kind: str, site: str) -> None:
        super().__init__(folder, kind)
        self.site = site

    def train(self, mode: bool = True) -> _OneSiteReference:
        super().train(False)
        self.model.get_submodule(self.site).train(mode)
        return self


@pytest.mark.parametrize("kind", ["ast"])
def test_head_mode_samples_the_last_ast_layer_whole(tmp_path: Path, kind: str) -> None:
    # AST's layer applies one dropout module twice (after attention and after the MLP): it is
    # not cut, so head samples the whole last layer
    folder = save_audio_model(tmp_path / kind, kind)
    parts = sampled_audio_classifier(folder, "head", kind)
    layers = f"{parts.architecture.base}.layers"
    assert parts.layers and all(layer.name.startswith(f"{layers}.1.") for layer in parts.layers)
    assert any(layer.name.endswith("attention.dropout") for layer in parts.layers)
    x = _features(folder, 2)
    assert _count_calls(parts, f"{layers}.0", x, n=30) == [2], "layers before the last: once"
    last = _count_calls(parts, f"{layers}.1", x, n=30)
    assert len(last) == 1 and last[0] >= 60, "the last layer: 30 x 2 folded rows (aligned)"


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert", "stable"])
def test_the_stages_are_the_models_own_eval_forward(tmp_path: Path, kind: str) -> None:
    family = "wav2vec2" if kind == "stable" else kind
    options = LAYER_NORM if kind == "stable" else DROPOUT[kind]
    folder = save_audio_model(tmp_path / kind, family, **options)
    parts = sampled_audio_classifier(folder, "all", kind)
    x = _features(folder)
    own = getattr(transformers, CLASSES[family]).from_pretrained(folder).eval()
    with torch.no_grad():
        torch.testing.assert_close(parts.classifier(x), own(input_values=x).logits)


def _count_calls(parts: SampledAudioClassifier, module: str, x: Tensor, n: int) -> list[int]:
    calls: list[int] = []
    target = parts.classifier.model.get_submodule(module)
    hook = target.register_forward_hook(lambda _m, args, _o: calls.append(len(args[0])))
    try:
        _served(parts, x, n=n)
    finally:
        hook.remove()
    return calls


def test_seeded_passes_repeat_and_the_eval_forward_is_the_models(tmp_path: Path) -> None:
    folder = save_audio_model(tmp_path / "a", "ast")
    parts = sampled_audio_classifier(folder, "all", "a")
    x = _features(folder)
    assert torch.equal(_served(parts, x, n=20), _served(parts, x, n=20))
    own = transformers.ASTForAudioClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        torch.testing.assert_close(parts.classifier(x), own(input_values=x).logits)


def test_spec_augment_is_named_unsampled(tmp_path: Path) -> None:
    folder = save_audio_model(tmp_path / "w", "wav2vec2", mask_time_prob=0.05)
    parts = sampled_audio_classifier(folder, "all", "w")
    assert len(parts.warnings) == 1 and "SpecAugment" in parts.warnings[0]
    assert "not sampled" in parts.warnings[0]


def test_weighted_layer_sum_is_refused(tmp_path: Path) -> None:
    folder = save_audio_model(tmp_path / "w", "wav2vec2", use_weighted_layer_sum=True)
    with pytest.raises(ModelLoadError, match="use_weighted_layer_sum"):
        sampled_audio_classifier(folder, "all", "w")


def test_without_transformers_the_folder_names_the_audio_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = save_audio_model(tmp_path / "w", "wav2vec2")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ModelLoadError, match=r'needs transformers: pip install "mcdrop\[audio\]"'):
        sampled_audio_classifier(folder, "all", "w")


def test_a_seeded_request_gets_the_same_numbers_alone_and_fused(tmp_path: Path) -> None:
    folder = save_audio_model(tmp_path / "w", "wav2vec2", layerdrop=0.2)
    parts = sampled_audio_classifier(folder, "all", "w")
    x = _features(folder, 2)
    other = _features(folder, 3).flip(1)
    sampler = MCSampler(parts.classifier, parts.layers, max_rows=256, split=parts.split)
    try:
        (alone,) = sampler.sample_jobs([SampleJob(x, 20, 11)])
        fused, _ = sampler.sample_jobs([SampleJob(x, 20, 11), SampleJob(other, 20, 4)])
    finally:
        sampler.close()
    assert torch.equal(alone, fused)


def _packed(folder: Path, seconds: tuple[float, ...]) -> tuple[Tensor, list[Tensor]]:
    """Packed rows [length, *waveform] of clips of ``seconds``, zero-padded, and each clip's
    extractor output alone."""
    extractor = load_feature_extractor(folder)
    clips = [tones(1, s, seed=i)[0] for i, s in enumerate(seconds)]
    alone = [
        torch.tensor(extractor(c, sampling_rate=SAMPLE_RATE, return_tensors="np")["input_values"])
        for c in clips
    ]
    longest = max(a.shape[1] for a in alone)
    packed = torch.zeros(len(alone), 1 + longest)
    for row, values in enumerate(alone):
        packed[row, 0] = values.shape[1]
        packed[row, 1 : 1 + values.shape[1]] = values[0]
    return packed, alone


class _MaskedReference(_Reference):
    def forward(self, x: Tensor) -> Tensor:
        lengths = x[:, 0].long()
        mask = (torch.arange(x.shape[1] - 1)[None, :] < lengths[:, None]).long()
        logits: Tensor = self.model(input_values=x[:, 1:], attention_mask=mask).logits
        return logits


def test_a_masked_model_gets_each_clips_own_numbers_however_padded(tmp_path: Path) -> None:
    folder = save_audio_model(tmp_path / "w", "wav2vec2", masks=True)
    parts = sampled_audio_classifier(folder, "all", "w", masked=True)
    assert parts.classifier.masked
    packed, alone = _packed(folder, (0.3, 0.7))
    own = transformers.Wav2Vec2ForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        batched = parts.classifier(packed)
        for row, values in enumerate(alone):
            torch.testing.assert_close(batched[row], own(input_values=values).logits[0])


def test_masked_moments_match_the_models_own_mc_dropout(tmp_path: Path) -> None:
    folder = save_audio_model(tmp_path / "w", "wav2vec2", masks=True)
    parts = sampled_audio_classifier(folder, "all", "w", masked=True)
    packed, _ = _packed(folder, (0.3, 0.7))
    served = probabilities(_served(parts, packed))
    reference = torch_mc_dropout(_MaskedReference(folder, "wav2vec2"), packed, PASSES)
    assert_moments_match(served, probabilities(reference))
