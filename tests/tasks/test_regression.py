"""Regression keeps the task contract; a dense output declared regression is refused at load."""

from __future__ import annotations

import pytest
import torch

from app.engine.predictor import TaskSpec
from app.errors import ModelLoadError
from app.tasks import TaskOptions, build_task
from tests.tasks.task_contract import TaskCase, check_task_contract


@pytest.mark.parametrize("head", [False, True], ids=["tau", "variance-head"])
def test_regression_keeps_the_contract(head: bool) -> None:
    width = 4 if head else 2
    raw = torch.randn(40, 3, width, generator=torch.Generator().manual_seed(0))
    spec = TaskSpec("regression", variance_head=True) if head else TaskSpec("regression", 0.25)
    wrong = [[2, 32, 32], [3]] if head else [[2, 32, 32], [2, 3]]
    check_task_contract(TaskCase(spec, raw, torch.arange(3.0).view(3, 1), [width], wrong))


def test_a_dense_output_declared_regression_is_refused_with_the_reason() -> None:
    task = build_task("regression", TaskOptions(noise_variance=1.0))
    with pytest.raises(ModelLoadError) as refused:
        task.check_output("dense", [2, 32, 32], None)
    assert refused.value.message == (
        "model 'dense': regression output must be (B, D) values, got (B, 2, 32, 32); a dense "
        "output needs a dense task"
    )
