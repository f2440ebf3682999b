"""The input-kind contract: one class per kind of input a model takes (tensor, text, image,
audio).

A kind turns what a client sends into the model's input rows, and says what it takes:

1. ``rows(rows, max_rows, field)``: v1 JSON rows (nested lists, strings, ``{"b64"}`` objects),
   multipart file contents (``bytes``) or the rows ``v2_rows`` returns, as the model's input
   tensor (B, ...). Every refusal is an :class:`~app.errors.InvalidInputError` (422) naming the
   field, the row and, inside a row, the position (``inputs[1][3]``).
2. ``v2_rows(tensors)``: the Open Inference Protocol input tensors (JSON ``data`` or binary
   data, see :class:`WireTensor`) as rows for ``rows``; a malformed tensor is an
   :class:`~app.errors.InvalidTensorError` (400).
3. ``describe()``: what the kind takes, for the v1 model metadata, the v2 input metadata
   (``v2_inputs``), the web page's form and ``check-model``.
4. ``example_rows(rows)``: example request rows from the kind's own domain (numbers inside
   the range, a sentence of vocabulary words, a generated image), and ``probe(rows)``, those
   rows through ``rows``: the load probe, the stochasticity audit and ``check-model`` run on
   them.

``tests/inputs/kind_contract.py`` runs every kind through the same checks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from torch import Tensor

from app.errors import InvalidInputError, InvalidTensorError

INPUT_NAME = "input"
"""The name of a model's (first) v2 input tensor."""

Rows = Sequence[Any] | np.ndarray
"""Request rows: JSON values or file contents, or one array (v2 tensors), batch first."""

Widget = Literal["numbers", "fields", "canvas", "integers", "sequence", "text", "image", "audio"]
"""How the web page asks for one row: a CSV row of numbers, named fields, a drawing canvas, a
row of integer ids, a [T, F] sequence upload (CSV or JSON), a text area, an image upload, an
audio upload."""


@dataclass(frozen=True)
class WireTensor:
    """One v2 input tensor as sent: ``data`` (JSON), or binary data: ``binary_size`` (its
    ``binary_data_size`` parameter, unchecked) and ``binary``, the body's binary tail from this
    tensor's first byte on."""

    name: str
    datatype: str
    shape: list[int]
    data: list[Any] | None = None
    binary_size: Any = None
    binary: bytes = b""

    @property
    def where(self) -> str:
        return f"input '{self.name}'"


@dataclass(frozen=True)
class TensorInfo:
    """A v2 input's metadata: name, datatype, shape (-1 variable) and what the protocol
    cannot say in a datatype."""

    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None


@dataclass(frozen=True)
class FileInput:
    """How a kind takes files: the multipart/form-data field they travel in, the file name
    endings ``mcdrop predict`` picks from a folder (lower case, ``.nii.gz`` included) and the
    formats in words (``PNG, JPEG or WebP``)."""

    field: str
    suffixes: tuple[str, ...]
    described: str

    def takes(self, name: str) -> bool:
        """Whether a file of this name is one of the kind's files (by its ending)."""
        return name.lower().endswith(self.suffixes)


@dataclass(frozen=True)
class InputDescription:
    """What an input kind takes, in words and numbers (v1 metadata, the page's form,
    ``check-model``)."""

    kind: Literal["tensor", "text", "image", "audio"]
    widget: Widget
    shape: list[int]
    """One row's shape; -1 marks the variable axis (text: [] )."""
    dtype: str
    summary: str
    """One line: ``[-1, 13] float32, up to 200 steps, lengths passed``."""
    range: tuple[float, float] | None = None
    """Integer inputs: [lo, hi); float inputs: the card's [smallest, largest]."""
    max_length: int | None = None
    """Text: tokens per text; a variable axis: its longest length."""
    max_characters: int | None = None
    lengths: bool = False
    """The model gets each row's true length (``forward(x, lengths)``)."""
    grid: list[int] | None = None
    """A drawing canvas's [rows, columns] (a small grey image as a tensor)."""
    preprocessing: str | None = None
    """Images, audio: what is done to each one."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Further v2 metadata parameters of the kind (text pairs, image encodings)."""
    files: FileInput | None = None
    """Kinds that take encoded files (images, audio): which, and in which form field."""


class InputKind(ABC):
    """Base class of every input kind (see the module docstring for the contract)."""

    @abstractmethod
    def rows(self, rows: Rows, max_rows: int, field: str = "inputs") -> Tensor:
        """The model's input tensor (B, ...) from request rows; 422 naming the field."""

    @abstractmethod
    def v2_rows(self, tensors: Mapping[str, WireTensor]) -> Rows:
        """Rows for :meth:`rows` from the v2 input tensors, by name; 400 with the reason."""

    @abstractmethod
    def describe(self) -> InputDescription:
        """What the kind takes."""

    @abstractmethod
    def v2_inputs(self) -> list[TensorInfo]:
        """The v2 input tensors it takes (the first named ``input``)."""

    @abstractmethod
    def example_rows(self, rows: int) -> Rows:
        """``rows`` deterministic example request rows from the kind's domain."""

    def probe(self, rows: int) -> Tensor:
        """The example rows as the model's input (rows, ...)."""
        return self.rows(self.example_rows(rows), rows)

    def chunk_rows(self, max_rows: int) -> int:
        """Most folded rows per forward call (texts: fewer, their attention grows with L)."""
        return max_rows

    def builds_inline(self, rows: Rows) -> bool:
        """Whether :meth:`rows` on these rows is so cheap that handing it to a decode thread
        would cost more than running it on the event loop (no kind but tensors says so)."""
        return False

    def v2_names(self) -> set[str]:
        """Names of the v2 inputs; ``input`` is required, the others optional."""
        return {tensor.name for tensor in self.v2_inputs()}


def check_row_count(rows: Rows, max_rows: int, field: str) -> None:
    """422 for no rows or more than ``max_rows``."""
    if len(rows) == 0:
        raise InvalidInputError(field, "must hold at least one row")
    if len(rows) > max_rows:
        raise InvalidInputError(field, f"has {len(rows)} rows, more than the limit of {max_rows}")


def only_input(tensors: Mapping[str, WireTensor]) -> WireTensor:
    """The ``input`` tensor of a kind that takes no other; 400 naming any other."""
    other = sorted(set(tensors) - {INPUT_NAME})
    if other or INPUT_NAME not in tensors:
        raise InvalidTensorError(
            f"the model takes exactly one input named '{INPUT_NAME}', got {sorted(tensors)}"
        )
    return tensors[INPUT_NAME]


INLINE_VALUES = 4096
"""Most numbers in a request whose rows the event loop builds itself (a digits image is 64,
a 3 x 32 x 32 one 3,072): below it the decode threads' hop (about 0.1 ms) is most of the work."""
INLINE_LISTS = 256
"""Most nested lists :func:`few_numbers` looks at before it gives up."""


def few_numbers(rows: Rows, limit: int = INLINE_VALUES) -> bool:
    """Whether ``rows`` (nested lists of numbers, or an array) hold at most ``limit`` numbers,
    found without reading them: the lengths of at most ``INLINE_LISTS`` lists are summed, so a
    crafted body (one row holding a million numbers) costs no more than a small one."""
    if isinstance(rows, np.ndarray):
        return rows.size <= limit
    pending: list[Any] = [rows]
    numbers = lists = 0
    while pending:
        item = pending.pop()
        if not isinstance(item, list | tuple):
            numbers += 1
        elif item and isinstance(item[0], list | tuple):
            lists += 1
            pending.extend(item)
        else:
            lists += 1
            numbers += len(item)
        if numbers > limit or lists > INLINE_LISTS:
            return False
    return True
