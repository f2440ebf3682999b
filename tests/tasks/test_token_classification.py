"""Token classification keeps the task contract and reports one entry per word."""

from __future__ import annotations

import math

import torch

from app.engine.predictor import TaskSpec
from app.engine.stats import classification_stats
from app.tasks import RowContext
from app.tasks.token_classification import TokenRow
from tests.tasks.task_contract import TaskCase, check_task_contract, predict

TEXTS = ["ab cde", "xyz"]
LENGTH = 6


def _inputs() -> torch.Tensor:
    """Packed rows (B, 6, L): [CLS] ab c ##de [SEP] [PAD] and [CLS] x ##yz [SEP] [PAD] [PAD]."""
    rows = torch.zeros(2, 6, LENGTH, dtype=torch.int64)
    rows[0, 0] = torch.tensor([2, 10, 11, 12, 3, 0])
    rows[0, 1] = torch.tensor([1, 1, 1, 1, 1, 0])
    rows[0, 3] = torch.tensor([0, 1, 1, 0, 0, 0])  # "ab" and "cde" start at 1 and 2
    rows[0, 4] = torch.tensor([0, 0, 3, 0, 0, 0])
    rows[0, 5] = torch.tensor([0, 2, 6, 0, 0, 0])
    rows[1, 0] = torch.tensor([2, 20, 21, 3, 0, 0])
    rows[1, 1] = torch.tensor([1, 1, 1, 1, 0, 0])
    rows[1, 3] = torch.tensor([0, 1, 0, 0, 0, 0])
    rows[1, 5] = torch.tensor([0, 3, 0, 0, 0, 0])
    return rows


def _case() -> TaskCase:
    raw = torch.randn(30, 2, LENGTH, 3, generator=torch.Generator().manual_seed(0))
    return TaskCase(
        spec=TaskSpec("token_classification"),
        raw=raw,
        inputs=_inputs(),
        output_shape=[LENGTH, 3],
        wrong_shapes=[[3], [2, 32, 32], [LENGTH, 4]],
        labels=["O", "PER", "LOC"],
        rows=TEXTS,
    )


def test_token_classification_keeps_the_contract() -> None:
    check_task_contract(_case())


def test_each_word_is_reported_once_at_its_first_sub_token_with_its_offsets() -> None:
    case = _case()
    task = check_task_contract(case)
    prediction = predict(case)
    rows = task.rows(prediction, RowContext(case.labels, TEXTS))
    assert all(isinstance(row, TokenRow) for row in rows)
    first, second = (row.tokens for row in rows if isinstance(row, TokenRow))
    assert [(t.text, t.start, t.end) for t in first] == [("ab", 0, 2), ("cde", 3, 6)]
    assert [(t.text, t.start, t.end) for t in second] == [("xyz", 0, 3)]
    # Each entry is the classification of its first sub-token's position.
    probs = torch.softmax(case.raw, dim=-1)
    for row, positions, tokens in ((0, [1, 2], first), (1, [1], second)):
        for position, token in zip(positions, tokens, strict=True):
            expected = classification_stats(probs[:, row, position : position + 1], 0.9)
            assert token.label == case.labels[int(expected.predicted_class)]  # type: ignore[index]
            assert math.isclose(token.confidence, float(expected.confidence), rel_tol=1e-6)
            assert math.isclose(
                token.mutual_information, float(expected.mutual_information), abs_tol=1e-6
            )
            assert math.isclose(
                token.predictive_entropy, float(expected.predictive_entropy), rel_tol=1e-6
            )
