"""The audio input kind: WAV, FLAC or OGG clips decoded to mono float32 at the model's rate,
then through the card's feature step (:mod:`app.inputs.audio_features`) into model rows.

v1: ``{"b64": ...}`` rows, or ``audio`` files of a multipart form (``curl -F audio=@a.wav``).
v2: a ``BYTES`` tensor [B] (or [B, 1]), base64 strings as JSON data, length-prefixed bytes as
binary data; or an ``FP32`` tensor [B, T] of mono samples already at the model's rate (T at
most ``max_seconds`` of them, checked from the shape before the data is read), the waveform a
WAV of the clip decodes to. Decoding (:func:`app.engine.audio.decode_audio`) checks every
bound from the header before a sample is read and runs where the data plane runs all request
building, on the decode threads under the request's deadline (a checkpoint between clips).

Rows with a variable axis (waveform samples, log-mel frames) are padded to the request's length
bucket as variable-length tensor rows are (:mod:`app.inputs.sequence`); with ``lengths: true``
they travel packed ``[length, *values]`` and the model is called ``forward(x, lengths)``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from app.engine.audio import check_samples, decode_audio, encode_wav
from app.engine.progress import checkpoint
from app.errors import InvalidInputError, InvalidTensorError
from app.inputs.audio_features import AudioFeatures
from app.inputs.base import (
    INPUT_NAME,
    FileInput,
    InputDescription,
    InputKind,
    Rows,
    TensorInfo,
    WireTensor,
    check_row_count,
    only_input,
)
from app.inputs.sequence import pack, pad_rows
from app.inputs.wire import BYTES, encoded_elements, numeric_array
from app.registry.card_inputs import AudioInputSpec

FP32 = "FP32"
AUDIO_FIELD = "audio"
"""The multipart/form-data field whose files are audio rows (``curl -F audio=@a.wav``)."""
SUFFIXES = (".wav", ".flac", ".ogg")
"""File name endings ``mcdrop predict`` picks from a folder."""
PROBE_SECONDS = (0.6, 0.35, 0.2)
"""Lengths of the generated probe clips (cut to ``max_seconds``), cycled."""


class AudioKind(InputKind):
    """Encoded audio clips through one feature step."""

    def __init__(self, spec: AudioInputSpec, features: AudioFeatures) -> None:
        self.spec = spec
        self.features = features
        self.shape = list(features.shape)
        self.axis = self.shape.index(-1) if -1 in self.shape else None
        self.lengths = spec.lengths and self.axis is not None

    def rows(self, rows: Rows, max_rows: int, field: str = "inputs") -> Tensor:
        """(B, *shape) float64 rows from encoded clips (or a (B, T) float array of waveforms
        at the model's rate, from v2 FP32), the variable axis padded to the request's bucket;
        packed (B, 1 + L*F) ``[length, *values]`` with ``lengths``."""
        check_row_count(rows, max_rows, field)
        parsed = []
        for index, row in enumerate(rows):
            checkpoint()  # between clips: a request past its deadline stops decoding here
            wave = self._wave(row, f"{field}[{index}]", waveforms=isinstance(rows, np.ndarray))
            parsed.append(torch.from_numpy(self.features.compute(wave)).to(torch.float64))
        if self.axis is None:
            return torch.stack(parsed)
        assert self.features.max_length is not None
        padded = pad_rows(parsed, self.axis, self.features.max_length, self.features.pad)
        if not self.lengths:
            return padded
        return pack(padded, [int(row.shape[self.axis]) for row in parsed])

    def _wave(self, row: Any, where: str, waveforms: bool) -> np.ndarray:
        """(T,) float32 samples at the model's rate of one row: decoded, or as sent."""
        spec = self.spec
        if not waveforms:
            data = _encoded(row, where)
            return decode_audio(data, spec.sample_rate, spec.max_seconds, where, spec.resample)
        wave = np.ascontiguousarray(row, dtype=np.float32)
        check_samples(wave, where)
        return wave

    def max_samples(self) -> int:
        """Most samples of one v2 FP32 waveform row: ``max_seconds`` at the model's rate."""
        return max(1, int(self.spec.max_seconds * self.spec.sample_rate))

    def v2_rows(self, tensors: Mapping[str, WireTensor]) -> Rows:
        """The encoded clips of a BYTES ``input`` tensor, or the (B, T) float32 waveforms of
        an FP32 one (its shape checked before its data is read)."""
        tensor = only_input(tensors)
        if tensor.datatype == BYTES:
            return encoded_elements(tensor, "audio clips")
        rate, most = self.spec.sample_rate, self.max_samples()
        if tensor.datatype != FP32:
            raise InvalidTensorError(
                f"{tensor.where}: datatype '{tensor.datatype}'; send BYTES clips or FP32 "
                f"[B, T] samples at {rate} Hz"
            )
        shape = tensor.shape
        if len(shape) != 2 or shape[0] < 1 or not 1 <= shape[1] <= most:
            raise InvalidTensorError(
                f"{tensor.where}: shape {shape}; FP32 audio is [B, T] mono samples at {rate} Hz, "
                f"1 <= T <= {most} ({self.spec.max_seconds:g} s)"
            )
        return numeric_array(tensor)

    def describe(self) -> InputDescription:
        spec, features = self.spec, self.features
        summary = (
            f"mono audio (WAV, FLAC, OGG) at {spec.sample_rate} Hz, up to {spec.max_seconds:g} s"
            f" -> {features.summary} {self.shape}"
            + (", lengths passed to the model" if self.lengths else "")
        )
        return InputDescription(
            kind="audio",
            widget="audio",
            shape=self.shape,
            dtype="float32",
            summary=summary,
            max_length=features.max_length,
            lengths=self.lengths,
            preprocessing=self._preprocessing(),
            extra=self._parameters(),
            files=FileInput(AUDIO_FIELD, SUFFIXES, "WAV, FLAC or OGG"),
        )

    def _preprocessing(self) -> str:
        spec = self.spec
        rate = "resampled to" if spec.resample else "refused unless at"
        return f"mixed down to mono, {rate} {spec.sample_rate} Hz, {self.features.summary}"

    def _parameters(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "input_type": "audio",
            "content_type": "audio",
            "formats": ["wav", "flac", "ogg"],
            "sample_rate": spec.sample_rate,
            "max_seconds": spec.max_seconds,
            "resample": spec.resample,
            "features": self.features.name,
            **self.features.parameters,
            "preprocessing": self._preprocessing(),
        }

    def v2_inputs(self) -> list[TensorInfo]:
        """Encoded clips, with what is done to them."""
        parameters = {
            **self._parameters(),
            "encoding": "base64 strings in JSON data; length-prefixed bytes as binary data",
            "also_accepts": f"FP32 [-1, -1] mono samples at {self.spec.sample_rate} Hz, at "
            f"most {self.max_samples()} per row",
        }
        return [TensorInfo(INPUT_NAME, BYTES, [-1], parameters)]

    def example_rows(self, rows: int) -> Rows:
        """Generated WAV clips at the model's rate: a tone in noise, of several lengths."""
        rate, generator = self.spec.sample_rate, np.random.default_rng(0)
        clips: list[bytes] = []
        for index in range(rows):
            seconds = min(PROBE_SECONDS[index % len(PROBE_SECONDS)], self.spec.max_seconds)
            t = np.arange(max(1, int(seconds * rate))) / rate
            tone = 0.4 * np.sin(2 * np.pi * (220.0 * (index + 1)) * t)
            noise = 0.05 * generator.standard_normal(t.shape[0])
            clips.append(encode_wav((tone + noise).astype(np.float32), rate))
        return clips


def _encoded(row: Any, where: str) -> bytes:
    """The encoded clip of one row: raw bytes (a multipart file, a v2 element) or
    ``{"b64": "..."}``; 422 naming the row for anything else."""
    if isinstance(row, bytes | bytearray):
        return bytes(row)
    if isinstance(row, dict) and set(row) == {"b64"} and isinstance(row["b64"], str):
        try:
            return base64.b64decode(row["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInputError(where, "is not valid base64") from None
    raise InvalidInputError(
        where,
        'this model takes audio files (WAV, FLAC, OGG) as {"b64": ...} rows or multipart '
        f"'{AUDIO_FIELD}' files, not {type(row).__name__} rows",
    )
