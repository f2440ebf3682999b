"""Log-mel frames: librosa's melspectrogram (Slaney mel, centred zero-padded frames, periodic
Hann) within float32 rounding, and hand-computed cases (frame counts, silence, a tone's band)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from app.engine.log_mel import (
    LOG_FLOOR,
    frame_count,
    frame_sizes,
    hz_to_mel,
    log_mel,
    mel_filterbank,
    mel_to_hz,
)

librosa = pytest.importorskip("librosa")


@pytest.mark.parametrize(
    ("rate", "samples", "n_mels", "win_ms", "hop_ms", "f_min", "f_max"),
    [
        (16_000, 16_000, 40, 25, 10, 0.0, None),
        (16_000, 123, 40, 25, 10, 0.0, None),  # shorter than one window
        (8_000, 4_001, 8, 32, 16, 0.0, None),
        (22_050, 5_000, 64, 23, 11.6, 60.0, 7_600.0),  # odd window (507)
    ],
)
def test_log_mel_matches_librosa(
    rate: int,
    samples: int,
    n_mels: int,
    win_ms: float,
    hop_ms: float,
    f_min: float,
    f_max: float | None,
) -> None:
    wave = (0.1 * np.random.default_rng(samples).standard_normal(samples)).astype(np.float32)
    window, hop = frame_sizes(rate, win_ms, hop_ms)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns of a clip shorter than one window
        power = librosa.feature.melspectrogram(
            y=wave, sr=rate, n_fft=window, hop_length=hop, win_length=window, window="hann",
            center=True, pad_mode="constant", power=2.0, n_mels=n_mels, fmin=f_min,
            fmax=f_max, htk=False, norm="slaney",
        )  # fmt: skip
    reference = np.log(power.T + LOG_FLOOR)
    ours = log_mel(wave, rate, n_mels, win_ms, hop_ms, f_min, f_max)
    assert ours.dtype == np.float32 and ours.shape == reference.shape
    assert ours.shape[0] == frame_count(samples, window, hop)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_frames_counts_by_hand() -> None:
    assert frame_sizes(16_000, 25, 10) == (400, 160)
    # 1 s at 16 kHz, centred: 200 + 16000 + 200 samples, windows of 400 every 160 -> 101.
    assert frame_count(16_000, 400, 160) == 101
    assert frame_count(1, 400, 160) == 1


def test_silence_is_the_log_floor_and_a_tone_lights_its_own_band() -> None:
    rate = 16_000
    silent = log_mel(np.zeros(3200, np.float32), rate, 40, 25, 10)
    np.testing.assert_allclose(silent, np.log(LOG_FLOOR), rtol=1e-6)
    t = np.arange(3200) / rate
    frames = log_mel(np.sin(2 * np.pi * 1000 * t).astype(np.float32), rate, 40, 25, 10)
    edges = mel_to_hz(np.linspace(0, hz_to_mel(np.array(8000.0)), 42))
    band = int(np.argmax(frames[10]))
    assert edges[band] < 1000 < edges[band + 2]  # the band whose triangle covers 1 kHz


def test_the_mel_scale_and_its_filters() -> None:
    hz = np.array([0.0, 500.0, 1000.0, 4000.0, 8000.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(hz)), hz, atol=1e-9)
    assert hz_to_mel(np.array(1000.0)) == pytest.approx(15.0)  # Slaney: linear up to 1 kHz
    bank = mel_filterbank(16_000, 400, 40, 0.0, 8000.0)
    np.testing.assert_allclose(
        bank, librosa.filters.mel(sr=16_000, n_fft=400, n_mels=40), atol=1e-7
    )
    assert not bank.flags.writeable
