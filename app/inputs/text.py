"""The text input kind: strings (or ``{"text", "text_pair"}`` objects) tokenized by the model
folder's tokenizer (:class:`app.registry.text.TextEncoder`) into packed (B, 3, L) rows.

v2: a ``BYTES`` tensor [B] of texts, or [B, 2] of (text, text_pair); JSON ``data`` holds
strings, binary data each element as a 4-byte little-endian length then its UTF-8 bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from app.errors import InvalidInputError, InvalidTensorError
from app.inputs.base import (
    INPUT_NAME,
    InputDescription,
    InputKind,
    Rows,
    TensorInfo,
    WireTensor,
    only_input,
)
from app.inputs.wire import BYTES, bytes_elements
from app.registry.text import TextEncoder

FALLBACK_SENTENCES = ("a probe sentence", "another, somewhat longer probe sentence for the model")
"""Probe texts of a tokenizer whose vocabulary holds no plain words."""
PROBE_WORDS = 12


class TextKind(InputKind):
    """Texts for a Hugging Face text model, tokenized per request."""

    def __init__(self, encoder: TextEncoder) -> None:
        self.encoder = encoder

    def rows(self, rows: Rows, max_rows: int, field: str = "inputs") -> Tensor:
        if any(isinstance(row, bytes | bytearray) for row in rows):
            raise InvalidInputError(field, "this model takes texts, not files")
        return self.encoder.rows_to_tensor(list(rows), max_rows, field)

    def chunk_rows(self, max_rows: int) -> int:
        return self.encoder.chunk_rows(max_rows)

    def v2_rows(self, tensors: Mapping[str, WireTensor]) -> Rows:
        """Strings, or ``{"text", "text_pair"}`` objects for [B, 2]."""
        tensor = only_input(tensors)
        where = tensor.where
        if tensor.datatype != BYTES:
            raise InvalidTensorError(
                f"{where}: a text model takes datatype BYTES, got {tensor.datatype}"
            )
        shape = tensor.shape
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 2) or shape[0] < 1:
            raise InvalidTensorError(f"{where}: shape {shape} is neither [B] nor [B, 2] (B >= 1)")
        count = math.prod(shape)
        if tensor.binary_size is not None:
            texts = _binary_texts(tensor, count)
        elif tensor.data is not None:
            texts = _json_texts(where, tensor.data, count)
        else:
            raise InvalidTensorError(f"{where}: has neither 'data' nor binary data")
        if len(shape) == 1:
            return list(texts)
        return [{"text": texts[i], "text_pair": texts[i + 1]} for i in range(0, count, 2)]

    def describe(self) -> InputDescription:
        encoder = self.encoder
        return InputDescription(
            kind="text",
            widget="text",
            shape=[],
            dtype="string",
            summary=f"text, up to {encoder.max_length} tokens "
            f"({encoder.max_characters} characters)",
            max_length=encoder.max_length,
            max_characters=encoder.max_characters,
            extra={
                "input_type": "text",
                "text_pairs": "BYTES [B, 2]",
                "max_length": encoder.max_length,
            },
        )

    def v2_inputs(self) -> list[TensorInfo]:
        """BYTES [B] (pairs: [B, 2], as the model's parameters say)."""
        return [TensorInfo(INPUT_NAME, BYTES, [-1])]

    def example_rows(self, rows: int) -> Rows:
        """Sentences of words from the tokenizer's own vocabulary, of different lengths, each
        within the card's ``max_characters``."""
        words = vocabulary_words(self.encoder.tokenizer, PROBE_WORDS)
        limit = self.encoder.max_characters
        if not words:
            return [FALLBACK_SENTENCES[i % 2][:limit] for i in range(rows)]
        sentences = []
        for i in range(rows):
            chosen = words[: max(1, len(words) - (len(words) * i) // rows)]
            while len(chosen) > 1 and len(" ".join(chosen)) > limit:
                chosen = chosen[:-1]
            sentences.append(" ".join(chosen)[:limit])
        return sentences


def vocabulary_words(tokenizer: Any, count: int) -> list[str]:
    """Up to ``count`` whole words of the tokenizer's vocabulary (alphabetic, not special, not a
    word piece), spread over the vocabulary by id, each tokenized as one known token."""
    special = set(getattr(tokenizer, "all_special_tokens", []))
    vocabulary: dict[str, int] = tokenizer.get_vocab()
    candidates = []
    for token, _ in sorted(vocabulary.items(), key=lambda item: item[1]):
        word = token.lstrip("Ġ▁")
        if token in special or token.startswith("##") or not word.isalpha() or len(word) < 2:
            continue
        candidates.append(word.lower())
    if not candidates:
        return []
    step = max(1, len(candidates) // count)
    unknown = getattr(tokenizer, "unk_token_id", None)
    chosen = []
    for word in candidates[::step]:
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(ids) == 1 and ids[0] != unknown:
            chosen.append(word)
        if len(chosen) == count:
            break
    return chosen


def _json_texts(where: str, data: list[Any], count: int) -> list[str]:
    flat = [item for row in data for item in (row if isinstance(row, list) else [row])]
    if len(flat) != count:
        raise InvalidTensorError(f"{where}: data holds {len(flat)} values, shape needs {count}")
    for index, value in enumerate(flat):
        if not isinstance(value, str):
            raise InvalidTensorError(f"{where}: data[{index}] is {value!r}, not a string")
    return flat


def _binary_texts(tensor: WireTensor, count: int) -> list[str]:
    elements = bytes_elements(tensor)
    if len(elements) != count:
        raise InvalidTensorError(
            f"{tensor.where}: binary data holds {len(elements)} elements, shape needs {count}"
        )
    texts = []
    for index, element in enumerate(elements):
        try:
            texts.append(element.decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidTensorError(f"{tensor.where}: element {index} is not UTF-8") from None
    return texts
