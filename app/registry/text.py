"""Text rows -> packed token tensors, with the model folder's fast tokenizer.

A request's texts are tokenized one by one (truncated to ``max_length``) and padded to a length
bucket: the smallest of 16, 32, 64, ... (and ``max_length`` itself) that holds the request's
longest text. The bucket depends only on the request's own texts, so a seeded request gives the
same numbers alone or fused with others (requests in different buckets run in separate forward
calls). Rows are packed as (B, 3, L) int64: token ids, attention mask, token type ids; with
``words`` (token classification) three more channels say where each word starts: 1 on the
first sub-token of each word of the text (padding, special tokens and a text pair's tokens are
0), and that word's character offsets [start, end) into the text (the fast tokenizer's
``offset_mapping`` and ``word_ids``; 0 elsewhere).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from app.engine.progress import checkpoint
from app.errors import InvalidInputError, ModelLoadError
from app.registry.huggingface import require_transformers

SMALLEST_BUCKET = 16
TOKENS_PER_CHUNK = 4096
"""Tokens (rows x max_length) per forward call of a text model: attention weights and masks of
a larger call outgrow the caches, and the folded run gets slower per sample (measured by
bench/text.py: 32-row chunks of 128 tokens beat one 240-row call by 12%)."""
TextRow = str | tuple[str, str]
"""One text, or a (text, text_pair) pair."""


class TextEncoder:
    """Validates text rows and tokenizes them into packed (B, 3, L) token tensors."""

    def __init__(
        self, tokenizer: Any, max_length: int, max_characters: int, words: bool = False
    ) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.max_characters = max_characters
        self.pad_id = int(tokenizer.pad_token_id or 0)
        self.words = words
        """Whether rows carry the word channels (token classification)."""

    def chunk_rows(self, max_rows: int) -> int:
        """Most folded rows per forward call: ``TOKENS_PER_CHUNK`` tokens, within [16, max_rows]."""
        return max(SMALLEST_BUCKET, min(max_rows, TOKENS_PER_CHUNK // self.max_length))

    def rows_to_tensor(self, rows: Sequence[Any], max_rows: int, field: str = "inputs") -> Tensor:
        """(B, 3, L) from JSON rows: strings or ``{"text": ..., "text_pair": ...}`` objects;
        errors name the offending row."""
        if not isinstance(rows, Sequence) or isinstance(rows, str) or len(rows) == 0:
            raise InvalidInputError(field, "must be a non-empty list of texts")
        if len(rows) > max_rows:
            raise InvalidInputError(
                field, f"has {len(rows)} rows, more than the limit of {max_rows}"
            )
        texts = [self._row(row, f"{field}[{i}]") for i, row in enumerate(rows)]
        checkpoint()  # a request already past its deadline is not tokenized
        return self.encode(texts)

    def _row(self, row: Any, field: str) -> TextRow:
        if isinstance(row, dict):
            unknown = set(row) - {"text", "text_pair"}
            if unknown or "text" not in row:
                raise InvalidInputError(field, "a text object has 'text' and optional 'text_pair'")
            text = self._text(row["text"], f"{field}.text")
            if row.get("text_pair") is None:
                return text
            return text, self._text(row["text_pair"], f"{field}.text_pair")
        return self._text(row, field)

    def _text(self, value: Any, field: str) -> str:
        if not isinstance(value, str):
            raise InvalidInputError(field, f"must be a string, got {type(value).__name__}")
        if len(value) > self.max_characters:
            raise InvalidInputError(
                field, f"has {len(value)} characters, more than the limit of {self.max_characters}"
            )
        return value

    def encode(self, rows: Sequence[TextRow]) -> Tensor:
        """Packed (B, 3, L) int64 rows (B, 6, L) with words, L the request's length bucket."""
        encoded = [self._tokenize(row) for row in rows]
        longest = max(len(channels[0]) for channels in encoded)
        length = bucket_length(longest, self.max_length)
        packed = torch.zeros((len(rows), 6 if self.words else 3, length), dtype=torch.int64)
        packed[:, 0] = self.pad_id
        for i, channels in enumerate(encoded):
            packed[i, 1, : len(channels[0])] = 1
            for channel, values in zip((0, 2, 3, 4, 5), channels, strict=False):
                packed[i, channel, : len(values)] = torch.tensor(values, dtype=torch.int64)
        return packed

    def _tokenize(self, row: TextRow) -> list[list[int]]:
        """Token ids and token types, then with words the first-sub-token flags and spans."""
        text, pair = (row, None) if isinstance(row, str) else row
        out = self.tokenizer(
            text,
            pair,
            truncation=True,
            max_length=self.max_length,
            return_token_type_ids=True,
            return_offsets_mapping=self.words,
        )
        ids = list(out["input_ids"])
        channels = [ids, list(out.get("token_type_ids") or [0] * len(ids))]
        if self.words:
            channels += word_channels(out.word_ids(), out.sequence_ids(), out["offset_mapping"])
        return channels


def word_channels(
    word_ids: Sequence[int | None],
    sequence_ids: Sequence[int | None],
    offsets: Sequence[tuple[int, int]],
) -> list[list[int]]:
    """Per token: 1 on the first sub-token of each word of the first text (else 0), and the
    character span [start, end) of that whole word (0, 0 elsewhere)."""
    first, start, end = [0] * len(word_ids), [0] * len(word_ids), [0] * len(word_ids)
    head: dict[int, int] = {}
    for position, (word, sequence) in enumerate(zip(word_ids, sequence_ids, strict=True)):
        if word is None or sequence != 0:
            continue
        if word not in head:
            head[word] = position
            first[position], start[position] = 1, int(offsets[position][0])
        end[head[word]] = int(offsets[position][1])
    return [first, start, end]


def bucket_length(tokens: int, max_length: int) -> int:
    """Padded length for a request whose longest text has ``tokens`` tokens."""
    length = SMALLEST_BUCKET
    while length < tokens:
        length *= 2
    return min(length, max_length)


def load_encoder(
    path: Path, max_length: int | None, max_characters: int, positions: int, words: bool = False
) -> TextEncoder:
    """The folder's fast tokenizer (offline) wrapped as a TextEncoder. ``positions`` is the
    model's number of position embeddings, the longest ``max_length`` it can take."""
    transformers = require_transformers()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            path, local_files_only=True, trust_remote_code=False
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: cannot load the tokenizer: {exc}") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(f"{path}: a fast tokenizer (tokenizer.json) is required")
    limit = (
        max_length if max_length is not None else min(positions, int(tokenizer.model_max_length))
    )
    if limit > positions:
        raise ModelLoadError(
            f"{path}: input.max_length {limit} exceeds the model's {positions} positions"
        )
    return TextEncoder(tokenizer, limit, max_characters, words)
