"""Tasks: what a model's output means (see :mod:`app.tasks.base` for the contract).

One module per task; ``TASKS`` maps a card's ``task`` to its class.
"""

from __future__ import annotations

from app.tasks.base import OutputTensor, RowContext, Task, TaskOptions
from app.tasks.classification import Classification
from app.tasks.multilabel import Multilabel
from app.tasks.regression import Regression
from app.tasks.segmentation import Segmentation
from app.tasks.token_classification import TokenClassification

TASKS: dict[str, type[Task]] = {
    task.name: task
    for task in (Classification, Regression, Multilabel, TokenClassification, Segmentation)
}


def build_task(name: str, options: TaskOptions = TaskOptions()) -> Task:
    """The task object of a card's ``task``."""
    try:
        return TASKS[name](options)
    except KeyError:
        raise ValueError(f"unknown task '{name}'; mcdrop serves {', '.join(TASKS)}") from None


__all__ = ["TASKS", "OutputTensor", "RowContext", "Task", "TaskOptions", "build_task"]
