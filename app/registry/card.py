"""The model card: ``models/<name>/model.yaml``, parsed and validated."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from app.engine.abstention import TASK_ABSTENTION_SCORES, AbstentionScore
from app.engine.conformal import SET_KINDS, ConformalKind
from app.errors import ModelLoadError
from app.registry.card_inputs import (
    InputSection,
    InputSpec,
    StrictSpec,
)

CARD_FILE = "model.yaml"


MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
"""A model's name, and the name of a folder the repository serves: one path segment of letters,
digits, ``_``, ``.`` and ``-`` (at most 128), starting with a letter or digit (so never ``..``)."""


class ArchitectureSpec(StrictSpec):
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


class WeightsSpec(StrictSpec):
    """Weights file (safetensors, or a state dict for torch.load(weights_only=True))."""

    file: str | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class SamplingSpec(StrictSpec):
    """Default and maximum number of MC passes per request."""

    default: int = Field(default=100, ge=1)
    max: int = Field(default=1000, ge=1)

    @model_validator(mode="after")
    def _default_within_max(self) -> SamplingSpec:
        if self.default > self.max:
            raise ValueError(f"n_samples.default ({self.default}) exceeds max ({self.max})")
        return self


class RegressionSpec(StrictSpec):
    """Aleatoric noise: a fixed precision ``tau`` or a variance head predicted by the model."""

    tau: float | None = Field(default=None, gt=0)
    variance_head: bool = False

    @model_validator(mode="after")
    def _one_noise_source(self) -> RegressionSpec:
        if (self.tau is None) == (not self.variance_head):
            raise ValueError("regression needs exactly one of 'tau' or 'variance_head: true'")
        return self


class MultilabelSpec(StrictSpec):
    """Multi-label models: a label is predicted where its mean probability reaches
    ``threshold``."""

    threshold: float = Field(default=0.5, gt=0.0, lt=1.0)


class SegmentationSpec(StrictSpec):
    """Segmentation models: a pixel is uncertain where its mutual information (nats) exceeds
    ``uncertainty_threshold`` (the answer's ``uncertain_share``)."""

    uncertainty_threshold: float = Field(default=0.1, ge=0.0)


TASKS = ("classification", "regression", "multilabel", "token_classification", "segmentation")
"""Task names a card may give (``app.tasks`` has one module each)."""
TaskName = Literal[
    "classification", "regression", "multilabel", "token_classification", "segmentation"
]


class AbstentionSpec(StrictSpec):
    """Calibrated abstention: rows whose `score` exceeds `threshold` carry ``abstain: true``."""

    score: AbstentionScore
    threshold: float = Field(ge=0)
    in_distribution_share: float = Field(gt=0, le=1)
    """Share of the calibration rows (in distribution) at or below the threshold."""
    calibrated_on: str | None = None
    """What the threshold was picked on (a file name), for the record."""
    n_samples: int | None = Field(default=None, ge=1)
    """MC passes used when calibrating; scores (mutual information most) depend on N."""


class ConformalSpec(StrictSpec):
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


class ShiftSpec(StrictSpec):
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


class ModelCard(StrictSpec):
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
