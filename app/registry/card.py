"""The model card: ``models/<name>/model.yaml``, parsed and validated."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from app.engine.abstention import TASK_ABSTENTION_SCORES, AbstentionScore
from app.engine.conformal import SET_KINDS, ConformalKind
from app.engine.images import ImagePreprocessing
from app.engine.medical import (
    MEDICAL_FORMATS,
    PILLOW_FORMATS,
    Format,
    ScanDecoder,
    ScanOptions,
    Window,
)
from app.errors import ModelLoadError

CARD_FILE = "model.yaml"


MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
"""A model's name, and the name of a folder the repository serves: one path segment of letters,
digits, ``_``, ``.`` and ``-`` (at most 128), starting with a letter or digit (so never ``..``)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
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


class WindowSpec(_Strict):
    """``window: {center: 40, width: 400}``: a display window in the scan's units (after
    DICOM's rescale), as DICOM's WindowCenter/WindowWidth."""

    center: float
    width: float = Field(gt=0)


class ImageInputSpec(_Strict):
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


class LogMelSpec(_Strict):
    """``features: {log_mel: {...}}``: log-mel frames (see :func:`app.engine.log_mel.log_mel`)."""

    n_mels: int = Field(ge=1, le=512)
    win_ms: float = Field(gt=0, le=1000)
    """Window (and FFT) length in milliseconds (periodic Hann)."""
    hop_ms: float = Field(gt=0, le=1000)
    """Step between frames in milliseconds."""
    f_min: float = Field(default=0.0, ge=0)
    f_max: float | None = Field(default=None, gt=0)
    """Highest mel band edge in Hz; default half the sample rate."""


class AudioFeaturesSpec(_Strict):
    """``features:`` as a mapping: one named feature step with its parameters."""

    log_mel: LogMelSpec


class AudioInputSpec(_Strict):
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


class ArchitectureSpec(_Strict):
    """Exactly one of: a bundled architecture, a Python file in the model folder, TorchScript,
    or a Hugging Face ``save_pretrained`` folder (``huggingface: .`` or a sub-folder)."""

    bundled: str | None = None
    file: str | None = None
    class_name: str | None = Field(default=None, alias="class")
    torchscript: str | None = None
    huggingface: str | None = None
    monai: str | None = None
    """A MONAI network class (``UNet``, ``BasicUNet``: ``app/registry/monai_nets.py``)."""
    kwargs: dict[str, Any] = Field(default_factory=dict)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _exactly_one_source(self) -> ArchitectureSpec:
        sources = [
            s
            for s in (self.bundled, self.file, self.torchscript, self.huggingface, self.monai)
            if s is not None
        ]
        if len(sources) != 1:
            raise ValueError(
                "architecture needs exactly one of 'bundled', 'file', 'torchscript', "
                "'huggingface', 'monai'"
            )
        if self.file is not None and self.class_name is None:
            raise ValueError("architecture.file needs 'class' (the nn.Module class to build)")
        return self


class WeightsSpec(_Strict):
    """Weights file (safetensors, or a state dict for torch.load(weights_only=True))."""

    file: str | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class SamplingSpec(_Strict):
    """Default and maximum number of MC passes per request."""

    default: int = Field(default=100, ge=1)
    max: int = Field(default=1000, ge=1)

    @model_validator(mode="after")
    def _default_within_max(self) -> SamplingSpec:
        if self.default > self.max:
            raise ValueError(f"n_samples.default ({self.default}) exceeds max ({self.max})")
        return self


class RegressionSpec(_Strict):
    """Aleatoric noise: a fixed precision ``tau`` or a variance head predicted by the model."""

    tau: float | None = Field(default=None, gt=0)
    variance_head: bool = False

    @model_validator(mode="after")
    def _one_noise_source(self) -> RegressionSpec:
        if (self.tau is None) == (not self.variance_head):
            raise ValueError("regression needs exactly one of 'tau' or 'variance_head: true'")
        return self


class MultilabelSpec(_Strict):
    """Multi-label models: a label is predicted where its mean probability reaches
    ``threshold``."""

    threshold: float = Field(default=0.5, gt=0.0, lt=1.0)


class SegmentationSpec(_Strict):
    """Segmentation models: a pixel is uncertain where its mutual information (nats) exceeds
    ``uncertainty_threshold`` (the answer's ``uncertain_share``)."""

    uncertainty_threshold: float = Field(default=0.1, ge=0.0)


TASKS = ("classification", "regression", "multilabel", "token_classification", "segmentation")
"""Task names a card may give (``app.tasks`` has one module each)."""
TaskName = Literal[
    "classification", "regression", "multilabel", "token_classification", "segmentation"
]


class AbstentionSpec(_Strict):
    """Calibrated abstention: rows whose `score` exceeds `threshold` carry ``abstain: true``."""

    score: AbstentionScore
    threshold: float = Field(ge=0)
    in_distribution_share: float = Field(gt=0, le=1)
    """Share of the calibration rows (in distribution) at or below the threshold."""
    calibrated_on: str | None = None
    """What the threshold was picked on (a file name), for the record."""
    n_samples: int | None = Field(default=None, ge=1)
    """MC passes used when calibrating; scores (mutual information most) depend on N."""


class ConformalSpec(_Strict):
    """Split-conformal calibration (``mcdrop calibrate --conformal``): served rows carry
    ``conformal_lower``/``conformal_upper`` (regression, ȳ ± quantile·std) or a
    ``prediction_set`` (classification: LAC, APS or RAPS sets with threshold `quantile`, or one
    per class) at `level`."""

    kind: ConformalKind
    level: float = Field(gt=0, lt=1)
    quantile: float = Field(ge=0)
    """q̂: the normalised-residual quantile, or the set score's threshold."""
    penalty: float = Field(default=0.0, ge=0)
    """RAPS's λ (added per rank beyond `k_reg`)."""
    k_reg: int = Field(default=0, ge=0)
    randomized: bool = False
    """Randomised APS/RAPS sets (exact coverage on average; a set may be empty)."""
    class_quantiles: list[float] | None = None
    """Mondrian (class-conditional) calibration: one threshold per class."""
    rows: int = Field(ge=1)
    """Calibration rows the quantile was taken over."""
    calibrated_on: str | None = None
    n_samples: int | None = Field(default=None, ge=1)
    """MC passes used when calibrating."""


class ShiftSpec(_Strict):
    """Distribution-shift detector (``mcdrop calibrate --ood``, :mod:`app.engine.shift`):
    class Gaussians on the training features and input ranges, kept in `file`; served rows carry
    ``shift_score`` and ``shift_flag`` (part of ``abstain``)."""

    file: str = "shift.safetensors"
    """Tensor file in the model folder: means, precision and (tabular inputs) input ranges."""
    sha256: str | None = None
    source: Literal["prefix", "input"]
    """Features modelled: the activation entering the first dropout, or the model input where
    the model has no deterministic prefix (TorchScript, a model run whole)."""
    source_note: str = ""
    """Why that source (the prefix split's reason), shown in metadata."""
    threshold: float = Field(ge=0)
    """Mahalanobis distance above which a row is flagged."""
    margin: float = Field(default=1.0, ge=0)
    """Flag a row with an input value more than `margin` training stds outside its range."""
    false_alarm_rate: float = Field(ge=0, lt=1)
    """Share of held-out in-distribution rows the threshold was chosen to flag."""
    held_out_false_alarms: float | None = None
    """Share of the held-out rows actually flagged."""
    rows: int = Field(ge=2)
    """Training rows the Gaussians were fitted on."""
    held_out_rows: int = Field(ge=1)
    calibrated_on: str | None = None


class ModelCard(_Strict):
    """Everything mcdrop needs to know to serve one model."""

    name: str = Field(pattern=MODEL_NAME_PATTERN)
    version: str = "1"
    task: TaskName
    description: str = ""
    input: InputSection
    labels: list[str] | None = None
    architecture: ArchitectureSpec
    weights: WeightsSpec = WeightsSpec()
    n_samples: SamplingSpec = SamplingSpec()
    regression: RegressionSpec | None = None
    multilabel: MultilabelSpec | None = None
    segmentation: SegmentationSpec | None = None
    abstention: AbstentionSpec | None = None
    target: str | None = None
    """Label column of evaluation CSV files (``mcdrop evaluate`` uses it unless told another)."""
    feature_names: list[str] | None = None
    """Names of the input values in row order (tabular models); the web page labels its form
    fields with them."""
    value_range: tuple[float, float] | None = None
    """Smallest and largest value an input takes (e.g. ``[0, 16]`` for the 8x8 digits pixels);
    the web page scales its drawing canvas to it."""
    training: dict[str, Any] = Field(default_factory=dict)
    mc_dropout: Literal["all", "head"] | list[str] = "all"
    """Dropout sites sampled: ``all``; ``head`` (only the dropout after the encoder or backbone:
    the backbone runs once per row, the head N times); or a list of dropout site names. The
    mapping form ``{sites: <one of those>, share: {SITE: [dims]}}`` sets ``dropout_share`` too."""
    dropout_share: dict[str, list[Annotated[int, Field(ge=1)]]] = Field(default_factory=dict)
    """Sampled site -> dimensions of its activation (the batch is 0) that share one mask: a
    time-locked (variational) mask, one per sequence and unit (Gal & Ghahramani 2016)."""
    sampled_modules: list[str] = Field(default_factory=list)
    """Custom stochastic modules sampled as they are (``mc_dropout: {modules: [...]}``): each
    pass runs them in training mode under a seeded generator (Python-file and bundled models)."""
    conformal: ConformalSpec | None = None
    shift: ShiftSpec | None = None
    unsampled: list[str] = Field(default_factory=list)
    """Modules acknowledged as sources of randomness mcdrop does not sample (a custom noise
    layer left off on purpose): the audit lists them instead of warning about them."""

    @model_validator(mode="before")
    @classmethod
    def _mc_dropout_mapping(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("mc_dropout"), dict):
            return data
        spec = data["mc_dropout"]
        unknown = sorted(set(spec) - {"sites", "share", "modules"})
        if unknown:
            raise ValueError(f"mc_dropout: unknown keys {unknown} (sites, share, modules)")
        if "dropout_share" in data or "sampled_modules" in data:
            raise ValueError("give mc_dropout's share and modules once, in mc_dropout")
        return {
            **data,
            "mc_dropout": spec.get("sites", "all"),
            "dropout_share": spec.get("share") or {},
            "sampled_modules": spec.get("modules") or [],
        }

    @model_validator(mode="before")
    @classmethod
    def _version_as_text(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("version"), int | float):
            data = {**data, "version": str(data["version"])}
        return data

    @model_validator(mode="after")
    def _task_fields(self) -> ModelCard:
        if self.task == "regression" and self.regression is None:
            raise ValueError(
                "a regression model needs a 'regression' section (tau or variance_head)"
            )
        if self.task != "regression" and self.regression is not None:
            raise ValueError(f"'regression' section given for a {self.task} model")
        if self.abstention is not None:
            scores = TASK_ABSTENTION_SCORES.get(self.task, ())
            if self.abstention.score not in scores:
                raise ValueError(
                    f"abstention on {self.abstention.score} does not apply to a {self.task}"
                    f" model; it takes {', '.join(scores) or 'no abstention'}"
                )
        if self.task != "classification" and self.shift is not None:
            raise ValueError("'shift' applies to classification models only")
        # A Hugging Face folder may say multi-label itself (config.problem_type).
        folder_says = self.task == "classification" and self.architecture.huggingface is not None
        if self.multilabel is not None and self.task != "multilabel" and not folder_says:
            raise ValueError(f"'multilabel' section given for a {self.task} model")
        if self.segmentation is not None and self.task != "segmentation":
            raise ValueError(f"'segmentation' section given for a {self.task} model")
        dense = ("multilabel", "token_classification", "segmentation")
        if self.task in dense and self.conformal is not None:
            raise ValueError(f"'conformal' does not apply to {self.task} models")
        arch = self.architecture
        external = arch.torchscript is not None or arch.huggingface is not None
        if not external and self.weights.file is None:
            raise ValueError(
                "weights.file is required unless the architecture is TorchScript or Hugging Face"
            )
        if (
            self.input.type == "audio"
            and self.input.features == "extractor"
            and not (arch.huggingface)
        ):
            raise ValueError("input.features: extractor needs architecture.huggingface")
        integral = self.input.type == "tensor" and self.input.dtype.startswith("int")
        if integral and self.value_range is not None:
            raise ValueError("an integer input takes input.range, not value_range")
        if arch.huggingface is not None and self.input.type == "tensor":
            raise ValueError("a huggingface architecture takes input.type text or image")
        if arch.huggingface is None and self.input.type == "text":
            raise ValueError("text input (input.type: text) goes with a huggingface architecture")
        if arch.huggingface is None and self.input.type == "image" and self.input.size is None:
            raise ValueError("input.size is required (only a huggingface folder brings its own)")
        if isinstance(self.mc_dropout, list) and not self.mc_dropout:
            raise ValueError("mc_dropout: name at least one dropout site, or use all / head")
        if self.conformal is not None:
            expected = ("normalised_residual",) if self.task == "regression" else SET_KINDS
            if self.conformal.kind not in expected:
                kinds = " or ".join(f"'{kind}'" for kind in expected)
                raise ValueError(f"conformal.kind must be {kinds} for a {self.task} model")
        return self

    @model_validator(mode="after")
    def _input_hints(self) -> ModelCard:
        values = (
            self.input.fixed_values
            if isinstance(self.input, InputSpec)
            else math.prod(self.input.shape)
        )
        if self.feature_names is not None and len(self.feature_names) != values:
            raise ValueError(
                f"feature_names has {len(self.feature_names)} names, the input has {values} values"
            )
        if self.value_range is not None and not self.value_range[0] < self.value_range[1]:
            raise ValueError("value_range must be [smallest, largest] with smallest < largest")
        return self


def read_card(folder: Path) -> ModelCard:
    """Parse and validate ``folder/model.yaml``; errors name the file and the field."""
    path = folder / CARD_FILE
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{path}: no model card") from exc
    except yaml.YAMLError as exc:
        raise ModelLoadError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{path}: expected a mapping at the top level")
    try:
        return ModelCard.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<card>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ModelLoadError(f"{path}: {problems}") from exc


class _FlowMap(dict[str, Any]):
    """A mapping written on one line (the architecture kwargs)."""


class _CardDumper(yaml.SafeDumper):
    """Block-style mappings, one-line lists and kwargs: the card layout in the docs."""


_CardDumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, True)
)
_CardDumper.add_representer(
    _FlowMap, lambda dumper, data: dumper.represent_mapping("tag:yaml.org,2002:map", data, True)
)


def card_yaml(document: dict[str, Any]) -> str:
    """YAML text of a card document: keys in the card's field order, lists and
    ``architecture.kwargs`` on one line, everything else in block style."""
    order = {
        (field.alias or name): index
        for index, (name, field) in enumerate(ModelCard.model_fields.items())
    }
    ordered = dict(sorted(document.items(), key=lambda item: order.get(item[0], len(order))))
    architecture = ordered.get("architecture")
    if isinstance(architecture, dict) and isinstance(architecture.get("kwargs"), dict):
        ordered["architecture"] = {**architecture, "kwargs": _FlowMap(architecture["kwargs"])}
    return yaml.dump(ordered, Dumper=_CardDumper, sort_keys=False, width=100, allow_unicode=True)


def write_card(folder: Path, document: dict[str, Any]) -> ModelCard:
    """Validate `document` as a card and replace ``folder/model.yaml`` with it atomically.

    Raises ModelLoadError (nothing written) when the document is not a valid card.
    """
    try:
        card = ModelCard.model_validate(document)
    except ValidationError as exc:
        raise ModelLoadError(
            f"{folder / CARD_FILE}: refusing to write an invalid card: {exc}"
        ) from exc
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=".model.", suffix=".yaml")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(card_yaml(document))
        os.chmod(temporary, 0o644)
        os.replace(temporary, folder / CARD_FILE)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return card
