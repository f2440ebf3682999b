"""Token classification (NER, tagging): one softmax per token over (N, B, L, C) logits.

The input rows carry, beside the token ids, which token starts each word and that word's
character span (:mod:`app.registry.text`, packed with ``words``). Statistics are computed at
every position (:mod:`app.engine.stats.dense`); answers report one entry per word, at its
first sub-token: padding, special tokens and later sub-tokens are never reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel
from torch import Tensor

from app.engine.stats.dense import DenseClassificationStats, dense_classification_stats
from app.tasks.base import OutputTensor, RowContext, Task

if TYPE_CHECKING:
    from app.engine.predictor import Prediction

WORD_FIRST, WORD_START, WORD_END = 3, 4, 5
"""Channels of packed text rows with words (:mod:`app.registry.text`): 1 on each word's first
sub-token, then that word's character span [start, end)."""


@dataclass(frozen=True)
class TokenStats(DenseClassificationStats):
    """Per-token statistics (B, L) (``mean`` (B, L, C)) and where the words are."""

    word: Tensor
    """(B, L) bool: the position is the first sub-token of a word of the text."""
    start: Tensor
    """(B, L) long: that word's first character in the text (0 elsewhere)."""
    end: Tensor
    """(B, L) long: one past its last character (0 elsewhere)."""


class TokenEntry(BaseModel):
    """One word of the input and its label's uncertainty (entropies in nats)."""

    text: str
    start: int
    """Character offset of the word in the input text."""
    end: int
    label: str | int
    confidence: float
    predictive_entropy: float
    mutual_information: float


class TokenRow(BaseModel):
    """Every word of one input text, in order."""

    tokens: list[TokenEntry]


_REPORTED = (
    "start",
    "end",
    "predicted_class",
    "confidence",
    "predictive_entropy",
    "mutual_information",
)


def _text_of(row: Any) -> str:
    text = row.get("text") if isinstance(row, dict) else row
    return text if isinstance(text, str) else ""


class TokenClassification(Task):
    """``task: token_classification``: Hugging Face ``*ForTokenClassification`` folders."""

    name = "token_classification"

    def output_problem(self, output_shape: list[int], labels: Sequence[str] | None) -> str | None:
        if len(output_shape) != 2:
            shown = ", ".join(map(str, output_shape))
            return f"token classification output must be (B, L, C) logits, got (B, {shown})"
        if labels is not None and len(labels) != output_shape[1]:
            return f"{len(labels)} labels but {output_shape[1]} outputs per token"
        return None

    def values(self, raw: Tensor) -> Tensor:
        return torch.softmax(raw, dim=-1)

    def value_dims(self, output_shape: Sequence[int]) -> list[int]:
        return [-1, *output_shape[1:]]  # the length is the request's

    def statistics(
        self, raw: Tensor, values: Tensor, ci_level: float, inputs: Tensor
    ) -> TokenStats:
        dense = dense_classification_stats(values)
        return TokenStats(
            **vars(dense),
            word=inputs[:, WORD_FIRST].bool(),
            start=inputs[:, WORD_START],
            end=inputs[:, WORD_END],
        )

    def rows(self, prediction: Prediction, context: RowContext) -> list[BaseModel]:
        stats, labels = prediction.stats, context.labels
        rows: list[BaseModel] = []
        for i in range(int(stats.word.shape[0])):
            text = _text_of(context.rows[i]) if i < len(context.rows) else ""
            positions = stats.word[i].nonzero().flatten().tolist()
            column = {name: getattr(stats, name)[i, positions].tolist() for name in _REPORTED}
            tokens = [
                TokenEntry(
                    text=text[column["start"][j] : column["end"][j]],
                    start=column["start"][j],
                    end=column["end"][j],
                    label=labels[c] if labels is not None else c,
                    confidence=column["confidence"][j],
                    predictive_entropy=column["predictive_entropy"][j],
                    mutual_information=column["mutual_information"][j],
                )
                for j, c in enumerate(column["predicted_class"])
            ]
            rows.append(TokenRow(tokens=tokens))
        return rows

    def outputs(self, dims: Sequence[int], conformal: bool) -> list[OutputTensor]:
        per_token = [-1]
        return [
            OutputTensor("mean", "FP32", list(dims)),
            OutputTensor("predicted_class", "INT64", per_token),
            *(
                OutputTensor(name, "FP32", per_token)
                for name in (
                    "confidence",
                    "predictive_entropy",
                    "expected_entropy",
                    "mutual_information",
                )
            ),
            OutputTensor("word", "BOOL", per_token),
            OutputTensor("start", "INT64", per_token),
            OutputTensor("end", "INT64", per_token),
        ]

    def observations(self, stats: Any) -> dict[str, Tensor]:
        return {
            "predictive_entropy": stats.predictive_entropy[stats.word],
            "mutual_information": stats.mutual_information[stats.word],
        }
