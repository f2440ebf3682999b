"""The task contract of :mod:`app.tasks.base`, as one check any task can run.

A new task passes ``check_task_contract(case)`` in its own tests, on raw outputs of the shape
its models give; the checks would fail if a statistic mixed rows, an output tensor did not
have the shape or datatype it declares, or a wrong output shape were served.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch import Tensor

from app.engine.predictor import Passes, Prediction, PredictionRequest, Predictor, TaskSpec
from app.engine.sampling import SampleJob
from app.errors import ModelLoadError
from app.tasks import RowContext, Task

DTYPES = {
    "FP32": torch.float32,
    "INT64": torch.int64,
    "BOOL": torch.bool,
    "UINT8": torch.uint8,
}
HISTOGRAMS = {"predictive_entropy", "mutual_information", "regression_std"}


@dataclass
class TaskCase:
    """One task and a request for it: raw outputs (N, B, *output_shape) and the input rows."""

    spec: TaskSpec
    raw: Tensor
    inputs: Tensor
    output_shape: list[int]
    """One row's output as the load probe sees it."""
    wrong_shapes: list[list[int]]
    """Outputs of one row the task must refuse at load."""
    labels: list[str] | None = None
    rows: Sequence[Any] = field(default_factory=list)


class FixedSampler:
    """A sampler whose passes are given: each job gets its rows of ``raw``."""

    def __init__(self, raw: Tensor, inputs: Tensor) -> None:
        self.raw, self.inputs = raw, inputs

    def sample_jobs(self, jobs: Sequence[SampleJob]) -> list[Tensor]:
        found = []
        for job in jobs:
            rows = [self._row(x) for x in job.inputs]
            found.append(self.raw[job.first_sample : job.first_sample + job.n_samples, rows])
        return found

    def prefix_of(self, inputs: Tensor) -> None:
        """No prefix (``Sampler.prefix_of``'s default)."""
        return None

    def _row(self, x: Tensor) -> int:
        return next(i for i, row in enumerate(self.inputs) if torch.equal(row, x))


def predict(case: TaskCase, inputs: Tensor | None = None) -> Prediction:
    inputs = case.inputs if inputs is None else inputs
    predictor = Predictor(FixedSampler(case.raw, case.inputs), case.spec)  # type: ignore[arg-type]
    request = PredictionRequest(inputs, int(case.raw.shape[0]), 0.9, seed=1, return_samples=True)
    return predictor.predict(request)


def check_task_contract(case: TaskCase) -> Task:
    """Every check of the contract; returns the task object for the task's own checks."""
    task = Predictor(FixedSampler(case.raw, case.inputs), case.spec).task  # type: ignore[arg-type]
    _check_output_check(task, case)
    prediction = predict(case)
    rows = int(case.inputs.shape[0])
    _check_rows_alone(task, case, prediction)
    answers = task.rows(prediction, RowContext(case.labels, case.rows))
    assert len(answers) == rows
    for answer in answers:
        json.loads(answer.model_dump_json())  # every number a JSON number
    _check_outputs(task, case, prediction)
    for name, values in task.observations(prediction.stats).items():
        assert name in HISTOGRAMS, f"{name} is not an uncertainty histogram"
        assert bool(torch.isfinite(values).all())
    passes = Passes(task.values(case.raw), task.noise(case.raw), 1)
    for strategy in task.strategies:
        scores = task.rank_scores(passes, strategy)
        assert scores.shape == (rows,) and bool(torch.isfinite(scores).all())
    with pytest.raises(ValueError):
        task.rank_scores(passes, "std" if "std" not in task.strategies else "bald")
    return task


def _check_output_check(task: Task, case: TaskCase) -> None:
    task.check_output("m", case.output_shape, case.labels)
    for wrong in case.wrong_shapes:
        with pytest.raises(ModelLoadError) as refused:
            task.check_output("m", wrong, case.labels)
        assert refused.value.message.startswith("model 'm': ")
        shown = ", ".join(map(str, wrong))
        reason = refused.value.message
        assert shown in reason or f"but {wrong[-1]} outputs" in reason, f"no shape: {reason}"


def _check_rows_alone(task: Task, case: TaskCase, prediction: Prediction) -> None:
    """Each row's statistics are its own: row i alone gives the numbers of row i in the batch."""
    for i in range(int(case.inputs.shape[0])):
        alone = predict(case, case.inputs[i : i + 1])
        for f in dataclasses.fields(prediction.stats):
            together = getattr(prediction.stats, f.name)
            mine = getattr(alone.stats, f.name)
            assert together.shape[0] == case.inputs.shape[0], f"{f.name} is not (B, ...)"
            torch.testing.assert_close(mine[0], together[i], msg=f"{f.name} of row {i}")


def _check_outputs(task: Task, case: TaskCase, prediction: Prediction) -> None:
    dims = task.value_dims(case.output_shape)
    outputs = task.outputs(dims, conformal=False)
    assert len({output.name for output in outputs}) == len(outputs)
    for output in outputs:
        tensor = task.output_tensor(prediction, output.name)
        assert tensor.dtype == DTYPES[output.datatype], output.name
        assert tensor.shape[0] == case.inputs.shape[0], output.name
        assert len(tensor.shape) == 1 + len(output.shape), output.name
        for size, declared in zip(tensor.shape[1:], output.shape, strict=True):
            assert declared in (-1, size), f"{output.name}: {list(tensor.shape)} vs {output.shape}"
    assert prediction.samples is not None
    assert list(prediction.samples.shape[2:])[-1] == dims[-1]
    assert math.isfinite(prediction.mc_standard_error)
