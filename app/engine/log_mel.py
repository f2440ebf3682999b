"""Log-mel frames of a waveform: one pure numpy function, :func:`log_mel`.

The recipe is librosa's ``melspectrogram`` defaults written out (tested against librosa):

1. window ``W = round(sample_rate * win_ms / 1000)`` samples (also the FFT length), hop
   ``H = round(sample_rate * hop_ms / 1000)``;
2. the waveform zero-padded by ``W // 2`` on each side (centred frames), cut into
   ``T = 1 + (len + 2 * (W // 2) - W) // H`` frames, each times a periodic Hann window;
3. power spectrum ``|rfft(frame)|^2`` (T, W // 2 + 1);
4. times the Slaney mel filterbank (``htk=False, norm="slaney"``: triangles on the Slaney mel
   scale, each scaled to unit area in Hz) from ``f_min`` to ``f_max``: (T, n_mels);
5. ``ln(mel + floor)``.

No state and no randomness: the same waveform always gives the same float32 frames.
"""

from __future__ import annotations

import functools
import math

import numpy as np

LOG_FLOOR = 1e-6
"""Added to the mel power before the logarithm: silence is ``ln(1e-6) = -13.8``."""

_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOG_STEP = math.log(6.4) / 27.0


def frame_sizes(sample_rate: int, win_ms: float, hop_ms: float) -> tuple[int, int]:
    """(window, hop) in samples."""
    window = max(2, round(sample_rate * win_ms / 1000))
    return window, max(1, round(sample_rate * hop_ms / 1000))


def frame_count(samples: int, window: int, hop: int) -> int:
    """T: frames of a ``samples``-long waveform (centred, see the module docstring)."""
    return 1 + (samples + 2 * (window // 2) - window) // hop


def log_mel(
    wave: np.ndarray,
    sample_rate: int,
    n_mels: int,
    win_ms: float,
    hop_ms: float,
    f_min: float = 0.0,
    f_max: float | None = None,
) -> np.ndarray:
    """(T, n_mels) float32 log-mel frames of a (samples,) waveform (module docstring)."""
    window, hop = frame_sizes(sample_rate, win_ms, hop_ms)
    padded = np.pad(np.asarray(wave, dtype=np.float64), window // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, window)[::hop]
    power = np.abs(np.fft.rfft(frames * _hann(window), axis=1)) ** 2
    bank = mel_filterbank(sample_rate, window, n_mels, f_min, f_max or sample_rate / 2)
    frames_mel: np.ndarray = np.log(power @ bank.T + LOG_FLOOR).astype(np.float32)
    return frames_mel


@functools.cache
def _hann(window: int) -> np.ndarray:
    """Periodic Hann window (scipy's ``hann(window, sym=False)``)."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(window) / window)


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _F_SP
    logarithmic = _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOG_STEP
    return np.where(hz >= _MIN_LOG_HZ, logarithmic, linear)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """The inverse of :func:`hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * _F_SP
    logarithmic = _MIN_LOG_HZ * np.exp(_LOG_STEP * (np.maximum(mel, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, logarithmic, linear)


@functools.cache
def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float
) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) Slaney-normalised triangular filters (librosa's
    ``filters.mel(htk=False, norm="slaney")``). Read-only: it is cached."""
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    low, high = hz_to_mel(np.array(f_min)), hz_to_mel(np.array(f_max))
    edges = mel_to_hz(np.linspace(low, high, n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - bins[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    bank: np.ndarray = np.maximum(0.0, np.minimum(lower, upper))
    bank *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    bank.setflags(write=False)
    return bank
