"""Classification keeps the task contract and answers what the statistics module computes."""

from __future__ import annotations

import dataclasses

import torch

from app.engine.predictor import TaskSpec
from app.engine.stats import classification_stats
from tests.tasks.task_contract import TaskCase, check_task_contract, predict


def _case() -> TaskCase:
    raw = torch.randn(40, 3, 4, generator=torch.Generator().manual_seed(0))
    return TaskCase(
        spec=TaskSpec("classification"),
        raw=raw,
        inputs=torch.arange(6.0).view(3, 2),
        output_shape=[4],
        wrong_shapes=[[4, 2], [2, 32, 32], [5]],
        labels=["a", "b", "c", "d"],
    )


def test_classification_keeps_the_contract() -> None:
    check_task_contract(_case())


def test_its_statistics_are_those_of_the_softmax_passes_bit_for_bit() -> None:
    case = _case()
    expected = classification_stats(torch.softmax(case.raw, dim=-1), 0.9)
    found = predict(case).stats
    for f in dataclasses.fields(expected):
        assert torch.equal(getattr(found, f.name), getattr(expected, f.name)), f.name
