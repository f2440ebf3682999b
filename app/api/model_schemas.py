"""What ``/v1/models`` answers: plain pydantic, no torch, so that the command-line client can
list a server's models without importing the engine (``mcdrop models`` starts in well under a
second)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class DropoutInfo(BaseModel):
    """One dropout site of a model."""

    name: str
    kind: str
    p: float
    site: Literal["attention", "hidden", "functional", "recurrent", "module"] = "hidden"
    """``attention``: attention probabilities; ``functional``: an F.dropout call in a forward;
    ``recurrent``: between two layers of a stacked LSTM/GRU/RNN (its ``dropout`` argument);
    ``module``: a custom stochastic module the card names, run as it is (see ``note``)."""
    sampled: bool = True
    """Whether MC passes draw masks for it (the card's ``mc_dropout`` chooses)."""
    note: str | None = None
    """How it is sampled, where that is not mcdrop's own masks (what that guarantees)."""


class UnsampledInfo(BaseModel):
    """A source of randomness in the model that MC passes do not sample."""

    name: str = Field(description="Module path ('' for the model's own forward).")
    kind: str
    reason: str
    acknowledged: bool = Field(
        default=False, description="The card names it in unsampled: left off on purpose."
    )


class AuditInfo(BaseModel):
    """The stochasticity audit at load, on the input kind's probe rows."""

    passes: int
    seconds: float
    reference_std: float | None = Field(
        default=None,
        description="Root mean per-element variance of the model's own torch MC dropout.",
    )
    sampled_std: float | None = Field(default=None, description="The same of mcdrop's passes.")
    z: float | None = Field(
        default=None, description="Standard errors the reference's variance exceeds mcdrop's."
    )
    note: str | None = None


class FileInfo(BaseModel):
    """The encoded files a model takes (images, audio)."""

    field: str = Field(description="The multipart/form-data field of the files.")
    suffixes: list[str] = Field(description="File name endings (`mcdrop predict` folders).")
    described: str = Field(description="The formats in words: `WAV, FLAC or OGG`.")


class InputInfo(BaseModel):
    """What a model takes, from its input kind: the page builds its form from it."""

    kind: Literal["tensor", "text", "image", "audio"]
    widget: Literal["numbers", "fields", "canvas", "integers", "sequence", "text", "image", "audio"]
    """How to ask for one row: a CSV row, named fields, a drawing canvas, integer ids, a
    [T, F] sequence upload (CSV or JSON), a text area, an image upload, an audio upload."""
    shape: list[int]
    """One row's shape; -1 marks the variable axis."""
    dtype: str
    summary: str
    range: list[float] | None = Field(
        default=None, description="Integers: [lo, hi); floats: [smallest, largest]."
    )
    max_length: int | None = Field(
        default=None, description="Text: tokens per text; a variable axis: its longest length."
    )
    max_characters: int | None = None
    lengths: bool = Field(default=False, description="The model gets each row's true length.")
    grid: list[int] | None = Field(default=None, description="A drawing canvas's [rows, cols].")
    preprocessing: str | None = None
    parameters: dict[str, Any] | None = Field(
        default=None,
        description="The kind's own parameters (audio: sample_rate, max_seconds, features).",
    )
    files: FileInfo | None = None


class ModelInfo(BaseModel):
    """What a client needs to know to call a model."""

    name: str
    version: str | None
    task: str | None
    ready: bool
    error: str | None = None
    description: str | None = None
    input_shape: list[int] | None = None
    input_dtype: str | None = None
    output_shape: list[int] | None = None
    labels: list[str] | None = None
    target: str | None = None
    feature_names: list[str] | None = Field(
        default=None,
        description="Names of the input values in row order (tabular models; `mcdrop train` "
        "records its CSV header).",
    )
    default_n_samples: int | None = None
    max_n_samples: int | None = None
    input_type: Literal["tensor", "text", "image", "audio"] | None = None
    max_length: int | None = Field(default=None, description="Text models: tokens per text.")
    preprocessing: str | None = Field(
        default=None, description="Image models: what the server does to each image."
    )
    input: InputInfo | None = None
    mc_dropout: str | None = Field(
        default=None, description="Sampled dropout: all, head (after the encoder) or names."
    )
    dropout_layers: int = Field(default=0, description="Dropout sites sampled.")
    dropout: list[DropoutInfo] = Field(default_factory=list)
    prefix_fraction: float = 0.0
    prefix_note: str | None = None
    shift_features: str = Field(
        default="",
        description="What the shift detector models: the prefix's activation entering the first "
        "dropout, or why there is none (the model input is used, or no detector can be fitted).",
    )
    warnings: list[str] = Field(default_factory=list)
    unsampled: list[UnsampledInfo] = Field(default_factory=list)
    audit: AuditInfo | None = None


class ModelList(BaseModel):
    """Every model in the repository."""

    models: list[ModelInfo]
