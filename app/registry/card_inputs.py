"""The model card's ``input`` section: a tensor or text (``InputSpec``), an image
(``ImageInputSpec``, with its scan formats) or audio (``AudioInputSpec``), told apart by
``type`` (``InputSection``)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from app.engine.images import ImagePreprocessing
from app.engine.medical import (
    MEDICAL_FORMATS,
    PILLOW_FORMATS,
    Format,
    ScanDecoder,
    ScanOptions,
    Window,
)


class StrictSpec(BaseModel):
    """A card section: unknown keys are refused, parsed values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(StrictSpec):
    """Shape of one input row (without the batch dimension) and its dtype; or text, which the
    server tokenizes with the model folder's tokenizer (``type: text``, no shape).

    A tensor may be integer (``dtype: int64`` or ``int32`` with ``range: [lo, hi)``: token ids,
    categories) and may have one variable axis (``shape: [-1, 13]`` with ``max_length``): rows
    of any length up to it are padded per request, and with ``lengths: true`` the model is
    called as ``forward(x, lengths)`` with each row's true length, a (B,) int64 tensor."""

    type: Literal["tensor", "text"] = "tensor"
    shape: list[int] = Field(default_factory=list)
    dtype: Literal["float32", "float64", "int32", "int64"] = "float32"
    range: tuple[float, float] | None = None
    """Integer inputs (required): every value in [lo, hi). Float inputs: every value in
    [lo, hi] (closed). The probe example is drawn inside it."""
    max_length: int | None = Field(default=None, ge=1)
    """Text: tokens per text (longer texts are truncated); the model's maximum when None.
    A variable axis (-1 in the shape): the longest row a request may send."""
    lengths: bool = False
    """A variable axis only: call ``forward(x, lengths)`` with the rows' true lengths."""
    max_characters: int = Field(default=10_000, ge=1)
    """Text only: longest text (in characters) a request may send; longer is a 4xx."""

    @model_validator(mode="after")
    def _positive_dims(self) -> InputSpec:
        if self.type == "text":
            if self.shape or self.range is not None or self.lengths:
                raise ValueError("input.shape, range and lengths do not apply to text inputs")
            if self.max_length is not None and self.max_length < 2:
                raise ValueError("input.max_length of a text input must be at least 2")
            return self
        if not self.shape:
            raise ValueError("input.shape is required for tensor inputs")
        if any(d < 1 and d != -1 for d in self.shape) or self.shape.count(-1) > 1:
            raise ValueError(
                f"input.shape dimensions must be >= 1 (one may be -1, variable), got {self.shape}"
            )
        variable = -1 in self.shape
        if variable != (self.max_length is not None):
            raise ValueError("a variable axis (-1 in input.shape) goes with input.max_length")
        if self.lengths and not variable:
            raise ValueError("input.lengths needs a variable axis (-1 in input.shape)")
        self._check_range()
        return self

    def _check_range(self) -> None:
        integral = self.dtype.startswith("int")
        if self.range is None:
            if integral:
                raise ValueError(f"input.range [lo, hi) is required for {self.dtype} inputs")
            return
        lo, hi = self.range
        if not lo < hi:
            raise ValueError(f"input.range must be [lo, hi) with lo < hi, got {list(self.range)}")
        if integral and not (float(lo).is_integer() and float(hi).is_integer()):
            raise ValueError(f"input.range of {self.dtype} inputs holds integers")

    @property
    def fixed_values(self) -> int:
        """Values per step of the variable axis (per row when there is none)."""
        return math.prod(d for d in self.shape if d != -1)


class WindowSpec(StrictSpec):
    """``window: {center: 40, width: 400}``: a display window in the scan's units (after
    DICOM's rescale), as DICOM's WindowCenter/WindowWidth."""

    center: float
    width: float = Field(gt=0)


class ImageInputSpec(StrictSpec):
    """``input: {type: image, ...}``: clients send encoded images (PNG, JPEG, WebP) and the
    server decodes and preprocesses them into (channels, H, W) rows; see
    :class:`app.engine.images.ImagePreprocessing`. Float rows of that shape are taken too."""

    type: Literal["image"]
    channels: Literal[1, 3] = 3
    size: tuple[int, int] | None = None
    """(H, W) the model reads. Required, except for a Hugging Face folder, whose own image
    processor (``preprocessor_config.json``) sets it and the rest of the preprocessing."""
    resize: int | None = Field(default=None, ge=1)
    """Shorter side scaled to this first (aspect kept); absent: no such step."""
    center_crop: bool = True
    """Central ``size`` crop (True) or a plain resize to ``size`` (False)."""
    mean: list[float] | None = None
    """Per channel, in [0, 1] pixel units (pixels are divided by 255 first); default 0."""
    std: list[float] | None = None
    """Per channel; default 1."""
    formats: list[Format] = Field(default_factory=lambda: list(PILLOW_FORMATS), min_length=1)
    """Encodings clients may send; ``dicom`` and ``nifti`` need ``mcdrop[scans]``. Each
    request image is told apart by its content (see :mod:`app.engine.medical`)."""
    window: WindowSpec | None = None
    """DICOM/NIfTI: values mapped to [0, 1]; absent: the file's window, else its range."""
    frame: int | None = Field(default=None, ge=0)
    """DICOM: the frame of a multi-frame file to read (0 first)."""
    slice: int | None = Field(default=None, ge=0)
    """NIfTI: the slice of a 3D volume along its third axis (0 first)."""

    @model_validator(mode="after")
    def _consistent(self) -> ImageInputSpec:
        scans = {"window": self.window, "frame": self.frame, "slice": self.slice}
        named = [key for key, value in scans.items() if value is not None]
        if named and not set(self.formats) & set(MEDICAL_FORMATS):
            raise ValueError(f"input.{named[0]} needs 'dicom' or 'nifti' in input.formats")
        if self.size is None:
            return self
        if min(self.size) < 1:
            raise ValueError(f"input.size dimensions must be >= 1, got {list(self.size)}")
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and len(values) != self.channels:
                raise ValueError(f"input.{name} needs {self.channels} value(s), got {values}")
        if self.std is not None and min(self.std) <= 0:
            raise ValueError(f"input.std values must be > 0, got {self.std}")
        if self.center_crop and self.resize is not None and self.resize < max(self.size):
            raise ValueError(f"input.resize {self.resize} is smaller than the crop {self.size}")
        if not self.center_crop and self.resize is not None:
            raise ValueError("input.resize needs center_crop: true (else size is resized to)")
        return self

    @property
    def shape(self) -> list[int]:
        """(channels, H, W): the shape of one preprocessed row ([channels] before a Hugging
        Face loader fills in the size)."""
        return [self.channels, *(self.size or ())]

    @property
    def dtype(self) -> Literal["float32"]:
        return "float32"

    def scan_decoder(self) -> ScanDecoder | None:
        """The DICOM/NIfTI decoder when ``formats`` names either; None: Pillow's formats."""
        if not set(self.formats) & set(MEDICAL_FORMATS):
            return None
        window = None if self.window is None else Window(self.window.center, self.window.width)
        options = ScanOptions(window=window, frame=self.frame, slice=self.slice)
        return ScanDecoder(tuple(dict.fromkeys(self.formats)), options)

    def preprocessing(self) -> ImagePreprocessing:
        """The engine's recipe for this section (a card with a size)."""
        assert self.size is not None
        return ImagePreprocessing(
            channels=self.channels,
            size=self.size,
            resize=self.resize,
            center_crop=self.center_crop,
            mean=tuple(self.mean or [0.0] * self.channels),
            std=tuple(self.std or [1.0] * self.channels),
        )


class LogMelSpec(StrictSpec):
    """``features: {log_mel: {...}}``: log-mel frames (see :func:`app.engine.log_mel.log_mel`)."""

    n_mels: int = Field(ge=1, le=512)
    win_ms: float = Field(gt=0, le=1000)
    """Window (and FFT) length in milliseconds (periodic Hann)."""
    hop_ms: float = Field(gt=0, le=1000)
    """Step between frames in milliseconds."""
    f_min: float = Field(default=0.0, ge=0)
    f_max: float | None = Field(default=None, gt=0)
    """Highest mel band edge in Hz; default half the sample rate."""


class AudioFeaturesSpec(StrictSpec):
    """``features:`` as a mapping: one named feature step with its parameters."""

    log_mel: LogMelSpec


class AudioInputSpec(StrictSpec):
    """``input: {type: audio, sample_rate, max_seconds, features}``: clients send WAV, FLAC or
    OGG files; the server decodes them to mono float32 at ``sample_rate`` and applies
    ``features`` (``waveform``: none; ``{log_mel: {n_mels, win_ms, hop_ms}}``: [T, n_mels]
    frames); see :mod:`app.inputs.audio`."""

    type: Literal["audio"]
    sample_rate: int = Field(ge=1000, le=384_000)
    """The rate the model reads (Hz); other rates are resampled to it (``resample``)."""
    max_seconds: float = Field(gt=0, le=600)
    """Longest clip a request may send; longer is a 4xx, refused from the header."""
    resample: bool = True
    """False: audio at another rate is refused instead of resampled."""
    features: AudioFeaturesSpec | Literal["waveform", "extractor"] = "waveform"
    """``extractor``: the Hugging Face folder's own feature extractor (implied for a folder)."""
    lengths: bool = False
    """Call ``forward(x, lengths)`` with each clip's true length (frames or samples)."""

    @property
    def features_name(self) -> str:
        """The row of :data:`app.inputs.audio_features.FEATURES` that builds the features."""
        return self.features if isinstance(self.features, str) else "log_mel"

    @property
    def shape(self) -> list[int]:
        """One row's shape: [-1] (waveform) or [-1, n_mels] (log-mel frames)."""
        if isinstance(self.features, AudioFeaturesSpec):
            return [-1, self.features.log_mel.n_mels]
        return [-1]

    @property
    def dtype(self) -> Literal["float32"]:
        return "float32"


def _input_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in ("image", "audio") else "tensor"


InputSection = Annotated[
    Annotated[InputSpec, Tag("tensor")]
    | Annotated[ImageInputSpec, Tag("image")]
    | Annotated[AudioInputSpec, Tag("audio")],
    Discriminator(_input_kind),
]
"""``input``: a float tensor (``shape``, ``dtype``), text, an image (``type: image``) or audio
(``type: audio``)."""
