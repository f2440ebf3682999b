"""The audio kind's feature step: what turns a decoded clip into one model input row.

The audio kind (:mod:`app.inputs.audio`) decodes every clip to a mono float32 waveform at the
model's sample rate, then applies one :class:`AudioFeatures`: a plain callable with the shape
and bounds of what it returns. Two are built from the card by :data:`FEATURES`:

- ``waveform`` (``features: waveform``, the default): the samples themselves, rows [T];
- ``log_mel`` (``features: {log_mel: {n_mels, win_ms, hop_ms}}``): :func:`app.engine.log_mel.
  log_mel` frames, rows [T, n_mels].

Adding a feature step is one function ``(spec) -> AudioFeatures`` and one row of
:data:`FEATURES` keyed by the card's ``features`` name (``AudioInputSpec.features_name``); a
loader that owns its features (a Hugging Face folder's feature extractor) may instead build an
``AudioFeatures`` itself and pass it to ``AudioKind``. Nothing else changes: the kind pads rows
with a variable axis (``shape`` holds one -1) to the request's length bucket with ``pad`` and,
with ``lengths: true``, passes each row's true length along that axis; rows of a fixed shape
(no -1) are stacked as they are.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from app.engine.log_mel import LOG_FLOOR, frame_count, frame_sizes, log_mel
from app.registry.card_inputs import AudioFeaturesSpec, AudioInputSpec


@dataclass(frozen=True)
class AudioFeatures:
    """One feature step: ``compute(wave) -> row`` and what its rows look like."""

    name: str
    compute: Callable[[np.ndarray], np.ndarray]
    """(samples,) float32 mono waveform at the model's rate -> one float32 row of ``shape``
    (the variable axis, if any, at the clip's length). Pure and deterministic."""
    shape: list[int]
    """A row's shape; at most one -1, the variable axis (frames, samples)."""
    max_length: int | None
    """The variable axis's longest length (a clip of ``max_seconds``); None when fixed."""
    pad: float
    """What padding steps of the variable axis hold (silence in the feature's units)."""
    summary: str
    """One line for the metadata (``log-mel 40 bands, 25 ms windows, 10 ms hop``)."""
    parameters: dict[str, Any]
    """The card's parameters of the step, for the v1/v2 metadata and the web page."""


def max_samples(spec: AudioInputSpec) -> int:
    """Samples of the longest clip at the model's rate (resampling rounds up)."""
    return math.ceil(spec.max_seconds * spec.sample_rate) + 1


def _the_waveform(wave: np.ndarray) -> np.ndarray:
    return wave


def waveform_features(spec: AudioInputSpec) -> AudioFeatures:
    """The waveform itself: rows [T] of samples, padded with 0."""
    return AudioFeatures(
        name="waveform",
        compute=_the_waveform,
        shape=[-1],
        max_length=max_samples(spec),
        pad=0.0,
        summary="the waveform",
        parameters={},
    )


def log_mel_features(spec: AudioInputSpec) -> AudioFeatures:
    """Log-mel frames [T, n_mels], padded with silence (``ln(LOG_FLOOR)``)."""
    assert isinstance(spec.features, AudioFeaturesSpec)
    mel = spec.features.log_mel
    rate = spec.sample_rate
    window, hop = frame_sizes(rate, mel.win_ms, mel.hop_ms)
    # A partial of a module function, not a closure: the feature step travels (pickled) to the
    # HTTP workers of an inference process with the rest of the model's description.
    compute = partial(
        log_mel,
        sample_rate=rate,
        n_mels=mel.n_mels,
        win_ms=mel.win_ms,
        hop_ms=mel.hop_ms,
        f_min=mel.f_min,
        f_max=mel.f_max,
    )
    return AudioFeatures(
        name="log_mel",
        compute=compute,
        shape=[-1, mel.n_mels],
        max_length=frame_count(max_samples(spec), window, hop),
        pad=float(np.log(np.float32(LOG_FLOOR))),
        summary=f"log-mel {mel.n_mels} bands, {mel.win_ms:g} ms windows, {mel.hop_ms:g} ms hop",
        parameters={"log_mel": mel.model_dump(), "window": window, "hop": hop},
    )


FEATURES: dict[str, Callable[[AudioInputSpec], AudioFeatures]] = {
    "waveform": waveform_features,
    "log_mel": log_mel_features,
}
"""The card's ``features`` name -> the function building its step (a new step: one row)."""


def card_features(spec: AudioInputSpec) -> AudioFeatures:
    """The feature step the card declares."""
    return FEATURES[spec.features_name](spec)
