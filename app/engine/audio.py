"""Encoded audio (WAV, FLAC, OGG) -> a mono float32 waveform at the model's sample rate.

Pure functions over bytes (no HTTP). ``soundfile`` (libsndfile) decodes and ``soxr`` resamples;
both are optional dependencies (``pip install "mcdrop[audio]"``), imported on first use, so a
server without them serves every other model and an audio model fails to load with that
instruction.

What the image decoder learnt applies here too: every bound is checked from the header before a
sample is decoded. A file whose header says it lasts longer than ``max_seconds``, has more
channels than :data:`MAX_CHANNELS`, a rate outside [:data:`MIN_SOURCE_RATE`,
:data:`MAX_SOURCE_RATE`] or more than :func:`decoded_limit` samples (frames x channels) is
refused without being read; the read itself asks for at most the header's frames, so a lying
header cannot make it allocate more. Resampling is bounded by the same duration.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

import numpy as np

from app.engine.progress import checkpoint
from app.errors import InvalidInputError, ModelLoadError

if TYPE_CHECKING:
    from soundfile import SoundFile

FORMATS = ("WAV", "WAVEX", "RF64", "FLAC", "OGG")
"""libsndfile container formats decoded (WAV in its three headers, FLAC, Ogg Vorbis/Opus);
anything else libsndfile recognises (AIFF, raw, MAT5, ...) is refused from its header."""
MAX_CHANNELS = 8
MIN_SOURCE_RATE = 1_000
MAX_SOURCE_RATE = 384_000
MAX_AMPLITUDE = 1_000.0
"""Largest sample magnitude taken. Integer formats decode into [-1, 1]; float WAVs and FLACs
may hold anything, and a value like 1e200 (a damaged or crafted file) would overflow the
features to infinity."""
AUDIO_EXTRA = 'audio models need soundfile and soxr: pip install "mcdrop[audio]"'


class InvalidAudioError(InvalidInputError):
    """An input meant as audio is not one the model can take (empty, corrupt, too long, wrong
    format, rate or channel count); a 4xx naming the input."""


def require_audio() -> None:
    """Raise ModelLoadError naming the extra to install when soundfile or soxr is missing."""
    try:
        import soundfile  # noqa: F401
        import soxr  # noqa: F401
    except (ImportError, OSError):  # OSError: soundfile without its libsndfile
        raise ModelLoadError(AUDIO_EXTRA) from None


def decoded_limit(max_seconds: float) -> int:
    """Most samples (frames x channels) one clip may decode to: ``max_seconds`` at the highest
    rate and channel count taken."""
    return math.ceil(max_seconds * MAX_SOURCE_RATE) * MAX_CHANNELS


def decode_audio(
    data: bytes, sample_rate: int, max_seconds: float, field: str, resample: bool = True
) -> np.ndarray:
    """(T,) float32 mono samples at ``sample_rate`` (channels averaged; other rates resampled
    with soxr's HQ filter, or refused when ``resample`` is False). InvalidAudioError naming
    ``field`` for empty, unreadable, corrupt, over-long or out-of-bounds audio (see the module
    docstring for the bounds, all checked before decoding)."""
    import soundfile

    if not data:
        raise InvalidAudioError(field, "is empty: no audio bytes were sent")
    try:
        sound = soundfile.SoundFile(io.BytesIO(data))
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError):
        raise InvalidAudioError(field, f"is not a {_formats()} audio file") from None
    with sound:
        _check_header(sound, sample_rate, max_seconds, field, resample)
        try:
            samples = sound.read(sound.frames, dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
            raise InvalidAudioError(field, f"is a corrupt {sound.format} file ({exc})") from None
        rate = sound.samplerate
    if samples.shape[0] == 0:
        raise InvalidAudioError(field, "holds no audio frames")
    check_samples(samples, field)
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    if rate != sample_rate:
        checkpoint()  # between decoding and resampling: a request past its deadline stops here
        mono = resample_to(mono, rate, sample_rate)
    return np.ascontiguousarray(mono, dtype=np.float32)


def check_samples(samples: np.ndarray, field: str) -> None:
    """InvalidAudioError naming ``field`` for NaN, infinite or huge (> ``MAX_AMPLITUDE``)
    samples (decoded clips and v2 FP32 waveforms alike)."""
    peak = float(np.abs(samples).max())
    if not np.isfinite(peak):
        raise InvalidAudioError(field, "holds NaN or infinite samples")
    if peak > MAX_AMPLITUDE:
        raise InvalidAudioError(
            field, f"holds a sample of magnitude {peak:.3g}; audio lies within [-1, 1]"
        )


def resample_to(samples: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    """(T * sample_rate / rate,) float32 samples resampled with soxr (HQ)."""
    import soxr

    return np.asarray(soxr.resample(samples, rate, sample_rate, quality="HQ"), dtype=np.float32)


def _check_header(
    sound: SoundFile, sample_rate: int, max_seconds: float, field: str, resample: bool
) -> None:
    fmt, frames, channels, rate = sound.format, sound.frames, sound.channels, sound.samplerate
    if fmt not in FORMATS:
        raise InvalidAudioError(field, f"is {fmt} audio; send {_formats()}")
    if not 1 <= channels <= MAX_CHANNELS:
        raise InvalidAudioError(
            field, f"has {channels} channels, more than the limit of {MAX_CHANNELS}"
        )
    if not MIN_SOURCE_RATE <= rate <= MAX_SOURCE_RATE:
        raise InvalidAudioError(
            field, f"is {rate} Hz; rates from {MIN_SOURCE_RATE} to {MAX_SOURCE_RATE} Hz are taken"
        )
    if rate != sample_rate and not resample:
        raise InvalidAudioError(
            field, f"is {rate} Hz audio; this model takes {sample_rate} Hz and does not resample"
        )
    if frames <= 0:
        raise InvalidAudioError(field, "holds no audio frames")
    seconds = frames / rate
    if seconds > max_seconds:
        raise InvalidAudioError(
            field, f"lasts {seconds:.2f} s, longer than this model's {max_seconds:g} s"
        )
    if frames * channels > decoded_limit(max_seconds):
        raise InvalidAudioError(field, f"would decode to {frames * channels} samples, too many")


def _formats() -> str:
    return "WAV, FLAC or OGG"


def encode_wav(samples: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> bytes:
    """A WAV file of (T,) or (T, channels) float samples in [-1, 1] (examples, tests)."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sample_rate, format="WAV", subtype=subtype)
    return buffer.getvalue()
