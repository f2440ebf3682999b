"""The audio kind: encoded clips (b64 rows, files, v2 BYTES) decoded, mixed down, resampled and
turned into log-mel frames or waveform rows; bad clips are 4xx naming the row, refused from the
header before anything is decoded."""

from __future__ import annotations

import base64
import io
import struct

import numpy as np
import pytest
import soundfile
import torch
from torch import Tensor

from app.engine.audio import decode_audio, encode_wav
from app.engine.log_mel import log_mel
from app.engine.progress import stopping_when
from app.errors import InvalidInputError
from app.inputs.audio import AudioKind
from app.inputs.audio_features import FEATURES, card_features
from app.inputs.base import INPUT_NAME, Rows, WireTensor
from app.registry.card_inputs import AudioInputSpec
from tests.inputs.audio_models import INPUT, SAMPLE_RATE, clips, tone
from tests.inputs.kind_contract import KindCase, check_input_kind


def _spec(**changes: object) -> AudioInputSpec:
    return AudioInputSpec.model_validate({**INPUT, **changes})


def _kind(**changes: object) -> AudioKind:
    spec = _spec(**changes)
    return AudioKind(spec, card_features(spec))


def _in_domain(rows: Rows, probe: Tensor) -> bool:
    """Clips at the model's rate, mono, within max_seconds; packed rows [length, frames]."""
    infos = [soundfile.info(io.BytesIO(row)) for row in rows]
    fits = all(i.samplerate == SAMPLE_RATE and i.channels == 1 and i.duration <= 1 for i in infos)
    lengths = probe[:, 0]
    return fits and bool((lengths >= 1).all()) and probe.shape[1] % 8 == 1


def test_audio_keeps_the_contract() -> None:
    encoded = clips()[:2]
    b64 = [base64.b64encode(clip).decode() for clip in encoded]
    raw = b"".join(struct.pack("<I", len(clip)) + clip for clip in encoded)
    check_input_kind(
        KindCase(
            kind=_kind(),
            rows=[{"b64": value} for value in b64],
            v2_json=WireTensor(INPUT_NAME, "BYTES", [2], data=b64),
            v2_binary=WireTensor(INPUT_NAME, "BYTES", [2], binary_size=len(raw), binary=raw),
            bad_rows=[{"b64": b64[0]}, {"b64": base64.b64encode(b"RIFF....WAVEjunk").decode()}],
            bad_field="inputs[1]",
            in_domain=_in_domain,
            describes="audio",
        )
    )


def test_rows_are_the_log_mel_frames_packed_with_their_lengths() -> None:
    kind = _kind()
    encoded = clips()
    packed = kind.rows(encoded, 4)
    waves = [decode_audio(clip, SAMPLE_RATE, 1.0, "x") for clip in encoded]
    frames = [log_mel(w, SAMPLE_RATE, 8, 32, 16) for w in waves]
    lengths = [f.shape[0] for f in frames]
    assert packed[:, 0].tolist() == lengths
    bucket = (packed.shape[1] - 1) // 8
    assert bucket == 63 and max(lengths) == 52  # 0.83 s: 52 frames; bucket 64 capped at 63
    values = packed[:, 1:].reshape(4, bucket, 8)
    for row, expected in zip(values, frames, strict=True):
        assert torch.equal(row[: expected.shape[0]], torch.from_numpy(expected).double())
        assert bool((row[expected.shape[0] :] == kind.features.pad).all())


def test_waveform_rows_are_the_samples_padded_with_zeros() -> None:
    kind = _kind(features="waveform", lengths=False)
    assert kind.describe().shape == [-1] and kind.features is not None
    rows = kind.rows(clips()[:2], 2)
    first = decode_audio(clips()[0], SAMPLE_RATE, 1.0, "x")
    assert rows.shape == (2, 4096) and torch.equal(
        rows[0, : first.shape[0]], torch.from_numpy(first).double()
    )
    assert bool((rows[0, first.shape[0] :] == 0).all())


def test_stereo_is_mixed_down_and_other_rates_resampled() -> None:
    left, right = tone(500, 0.4, 44_100, seed=1), tone(500, 0.4, 44_100, noise=0.0)
    stereo = encode_wav(np.stack([left, right], axis=1), 44_100, subtype="FLOAT")
    wave = decode_audio(stereo, SAMPLE_RATE, 1.0, "x")
    assert abs(wave.shape[0] - 0.4 * SAMPLE_RATE) <= 1
    spectrum = np.abs(np.fft.rfft(wave))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / wave.shape[0]
    assert abs(peak_hz - 500) < 5  # the tone kept its pitch through soxr
    same_rate = np.stack([left[:3200], right[:3200]], axis=1)
    mixed = decode_audio(encode_wav(same_rate, SAMPLE_RATE, "FLOAT"), SAMPLE_RATE, 1.0, "x")
    np.testing.assert_allclose(mixed, same_rate.mean(axis=1), atol=1e-7)


@pytest.mark.parametrize("fmt", ["FLAC", "OGG"])
def test_flac_and_ogg_are_decoded_too(fmt: str) -> None:
    buffer = io.BytesIO()
    soundfile.write(buffer, tone(440, 0.3), SAMPLE_RATE, format=fmt)
    wave = decode_audio(buffer.getvalue(), SAMPLE_RATE, 1.0, "x")
    assert abs(wave.shape[0] - 0.3 * SAMPLE_RATE) < 2 and np.abs(wave).max() > 0.3


def _lying_wav(frames: int, channels: int = 1, rate: int = SAMPLE_RATE) -> bytes:
    """A PCM16 WAV header claiming ``frames`` frames, followed by only 100 bytes of data."""
    size = frames * channels * 2
    header = b"RIFF" + struct.pack("<I", 36 + size) + b"WAVEfmt "
    header += struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * 2, channels * 2, 16)
    return header + b"data" + struct.pack("<I", size) + b"\x00" * 100


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "is empty"),
        (b"not audio at all" * 10, "is not a WAV, FLAC or OGG audio file"),
        (encode_wav(tone(440, 1.5), SAMPLE_RATE), "lasts 1.50 s, longer than this model's 1 s"),
        (_lying_wav(100, channels=12), "has 12 channels, more than the limit of 8"),
        (_lying_wav(100, rate=500), "is 500 Hz; rates from 1000"),
        (_lying_wav(100, rate=500_000), "is 500000 Hz; rates from 1000 to 384000 Hz"),
        (encode_wav(np.zeros((0,), np.float32), SAMPLE_RATE), "holds no audio frames"),
        (encode_wav(np.array([0.1, np.nan], np.float32), SAMPLE_RATE, "FLOAT"), "NaN"),
        (encode_wav(np.array([0.1, 1e30], np.float32), SAMPLE_RATE, "FLOAT"), "magnitude 1e+30"),
    ],
)
def test_bad_clips_are_refused_naming_the_row(data: bytes, problem: str) -> None:
    kind = _kind()
    good = clips()[0]
    with pytest.raises(InvalidInputError) as refused:
        kind.rows([good, data], 2)
    assert refused.value.message.startswith("inputs[1]: ") and problem in refused.value.message


def test_an_aiff_file_is_refused_from_its_header() -> None:
    buffer = io.BytesIO()
    soundfile.write(buffer, tone(440, 0.2), SAMPLE_RATE, format="AIFF")
    with pytest.raises(InvalidInputError, match=r"^inputs\[0\]: is AIFF audio; send WAV"):
        _kind().rows([buffer.getvalue()], 1)


def test_a_wrong_rate_is_refused_when_the_card_does_not_resample() -> None:
    kind = _kind(resample=False)
    other = encode_wav(tone(440, 0.2, 16_000), 16_000)
    with pytest.raises(InvalidInputError, match=r"is 16000 Hz audio; this model takes 8000 Hz"):
        kind.rows([other], 1)
    assert kind.rows(clips()[:1], 1).shape[0] == 1


def test_number_rows_and_bad_base64_are_refused() -> None:
    kind = _kind()
    with pytest.raises(InvalidInputError, match=r"^inputs\[0\]: this model takes audio files"):
        kind.rows([[0.1, 0.2]], 1)
    with pytest.raises(InvalidInputError, match=r"^inputs\[0\]: is not valid base64"):
        kind.rows([{"b64": "%%%"}], 1)


def test_a_lying_header_decodes_only_what_the_file_holds() -> None:
    # 62 hours claimed, 50 frames present: libsndfile takes the frames the file can hold, and
    # the read asks for no more than those.
    wave = decode_audio(_lying_wav(10**9 // 2), SAMPLE_RATE, 1.0, "x")
    assert wave.shape == (50,)


def test_the_feature_table_names_each_card_form() -> None:
    assert set(FEATURES) >= {"waveform", "log_mel"}
    assert card_features(_spec()).name == "log_mel" and card_features(_spec()).shape == [-1, 8]
    described = _kind().describe()
    assert described.max_length == 63 and described.lengths
    assert described.extra["sample_rate"] == SAMPLE_RATE
    assert "8 kHz" not in described.summary and "8000 Hz" in described.summary


def test_decoding_stops_between_clips_once_the_deadline_passes() -> None:
    class LateError(Exception):
        pass

    def past_deadline() -> None:
        raise LateError()

    with stopping_when(past_deadline), pytest.raises(LateError):
        _kind().rows(clips(), 4)


def _encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, tone(440, 0.5), SAMPLE_RATE, format=fmt)
    return buffer.getvalue()


def test_a_truncated_flac_is_refused_as_corrupt() -> None:
    flac = _encoded("FLAC")
    with pytest.raises(InvalidInputError, match=r"^inputs\[0\]: is a corrupt FLAC file"):
        _kind().rows([flac[: len(flac) // 2]], 1)


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG"])
def test_damaged_files_are_rows_or_4xx_never_anything_else(fmt: str) -> None:
    """Seeded damage (cut short, bytes flipped, header bytes flipped): each either decodes to
    finite frames or is refused naming its row."""
    data, rng, kind = _encoded(fmt), np.random.default_rng(7), _kind()
    for _ in range(25):
        damaged = bytearray(data[: int(rng.integers(1, len(data) + 1))])
        for index in rng.integers(0, len(damaged), int(rng.integers(1, 40))):
            damaged[index] ^= int(rng.integers(1, 256))
        try:
            rows = kind.rows([bytes(damaged)], 1)
        except InvalidInputError as refused:
            assert refused.message.startswith("inputs[0]: ")
        else:
            assert bool(torch.isfinite(rows).all())
