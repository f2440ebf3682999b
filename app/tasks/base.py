"""The task contract: what a model's output means, from the load check to the response.

A task turns raw model outputs ``(N, B, *output_shape)`` (N passes, B rows) into per-request
statistics (pure tensor functions in :mod:`app.engine.stats`), and those into the v1 rows, the
v2 output tensors, the metric observations, the rank scores and the evaluation report. Every
task is one subclass of :class:`Task` (one module in ``app/tasks/``), checked by
``tests/tasks/task_contract.py``. Outputs may have extra axes after the batch: a task over
``(N, B, L, C)`` (tokens) or ``(N, B, C, H, W)`` (pixels) declares them in its v2 outputs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel
from torch import Tensor

from app.engine.abstention import AbstentionRule, RankingScore
from app.engine.acquisition import Strategy
from app.engine.conformal import ConformalOutput, ConformalRule
from app.errors import InvalidInputError, ModelLoadError

if TYPE_CHECKING:
    from app.engine.predictor import Passes, Prediction


@dataclass(frozen=True)
class TaskOptions:
    """What the card says about the output beyond its task name."""

    noise_variance: float | None = None
    """Regression: fixed aleatoric variance 1/tau; None with a variance head."""
    variance_head: bool = False
    threshold: float = 0.5
    """Multi-label: a label is predicted where its mean probability is >= this."""
    uncertainty_threshold: float = 0.1
    """Segmentation: a pixel counts as uncertain where its mutual information (nats) exceeds
    this."""


@dataclass(frozen=True)
class OutputTensor:
    """One v2 output: its name, datatype and shape after the batch axis (-1: varies)."""

    name: str
    datatype: str
    shape: list[int]


@dataclass(frozen=True)
class RowContext:
    """What v1 rows may need beyond the statistics: the card's labels and the request's rows
    as sent (texts, for tasks that point into them)."""

    labels: list[str] | None = None
    rows: Sequence[Any] = field(default_factory=list)
    maps: str = "json"
    """Dense tasks: how per-pixel maps are written (``json``, ``png``, ``npy``, ``none``)."""


class Task(ABC):
    """One task: every method is pure over tensors, none knows HTTP."""

    name: ClassVar[str]
    strategies: ClassVar[tuple[Strategy, ...]] = ()
    """Rank strategies that apply (empty: the task cannot be ranked)."""
    feedback: ClassVar[bool] = False
    """Whether predictions are held for labelled feedback (scored by ``app.dataplane.feedback``)."""

    def __init__(self, options: TaskOptions = TaskOptions()) -> None:
        self.options = options

    def check_output(
        self, model: str, output_shape: Sequence[int], labels: Sequence[str] | None
    ) -> None:
        """ModelLoadError with the reason when one row's output shape does not fit the task."""
        problem = self.output_problem(list(output_shape), labels)
        if problem is not None:
            raise ModelLoadError(f"model '{model}': {problem}")

    @abstractmethod
    def output_problem(self, output_shape: list[int], labels: Sequence[str] | None) -> str | None:
        """Why an output of one row shaped ``output_shape`` does not fit, or None."""

    @abstractmethod
    def values(self, raw: Tensor) -> Tensor:
        """Per-pass values whose mean is returned (probabilities, means). (N, B, ...) ->
        (N, B, ...)."""

    def noise(self, raw: Tensor) -> float | Tensor | None:
        """Aleatoric variance of each pass (regression), else None."""
        return None

    def value_dims(self, output_shape: Sequence[int]) -> list[int]:
        """Shape of one row's values (the output shape, less a variance head's half)."""
        return list(output_shape)

    @abstractmethod
    def statistics(self, raw: Tensor, values: Tensor, ci_level: float, inputs: Tensor) -> Any:
        """The request's statistics (a dataclass of (B, ...) tensors) from raw outputs
        (N, B, *output_shape), their ``values`` and the request's input rows (B, ...)."""

    def abstain(self, stats: Any, rule: AbstentionRule | None) -> Tensor | None:
        """(B,) bool abstention flags where the task and the card have a rule."""
        return None

    def conformal(self, stats: Any, rule: ConformalRule | None) -> ConformalOutput | None:
        """The card's conformal band or sets, where the task has one."""
        return None

    @abstractmethod
    def rows(self, prediction: Prediction, context: RowContext) -> list[BaseModel]:
        """One v1 response object per input row."""

    @abstractmethod
    def outputs(self, dims: Sequence[int], conformal: bool) -> list[OutputTensor]:
        """The v2 output tensors, in order, for values of one row shaped ``dims``."""

    def output_tensor(self, prediction: Prediction, name: str) -> Tensor:
        """The (B, ...) tensor of one v2 output (a statistic of the same name by default)."""
        tensor: Tensor = getattr(prediction.stats, name)
        return tensor

    def render_png(self, prediction: Prediction, opacity: float) -> bytes | None:
        """The answer drawn as a PNG (``Accept: image/png``), where the task has a picture;
        ``opacity`` of the uncertainty heatmap in [0, 1]. None: no picture."""
        return None

    @abstractmethod
    def observations(self, stats: Any) -> dict[str, Tensor]:
        """Values to observe per uncertainty histogram (``predictive_entropy``,
        ``mutual_information``, ``regression_std``) for one live prediction."""

    def rank_scores(self, passes: Passes, strategy: Strategy) -> Tensor:
        """(B,) acquisition score of each row, higher = label it first."""
        raise ValueError(f"strategy '{strategy}' does not apply to {self.name}")

    def parse_targets(
        self, targets: Sequence[Any], labels: Sequence[str] | None, output_shape: list[int]
    ) -> Tensor:
        """Evaluation targets (B, ...) as a tensor; errors name ``targets[i]``."""
        raise InvalidInputError("targets", f"evaluation is not available for {self.name} models")

    def evaluation(
        self,
        passes: Passes,
        targets: Tensor,
        ci_level: float,
        coverages: Sequence[float],
        ranking_score: RankingScore,
    ) -> dict[str, Any]:
        """The task's evaluation report, keyed by the task's field of the answer."""
        raise ValueError(f"evaluation is not available for {self.name} models")


class StreamedTask(Task):
    """A dense task whose statistics are sums over passes: the predictor samples a request
    round by round (passes ``first_sample``..) and folds each round into running sums, so a
    request's memory does not grow with N (:mod:`app.engine.streaming`)."""

    @abstractmethod
    def round_passes(self, rows: int, row_values: int) -> int:
        """Passes per round for ``rows`` rows of ``row_values`` raw values each (a multiple
        of the row alignment)."""

    @abstractmethod
    def accumulate(self, sums: Any, raw: Tensor) -> Any:
        """Sums (None before the first round) with one round of raw outputs
        (n, B, *output_shape) folded in."""

    @abstractmethod
    def summary(self, sums: Any, ci_level: float, inputs: Tensor) -> Any:
        """The request's statistics (a dataclass of (B, ...) tensors) from its sums and its
        input rows (B, ...)."""

    @abstractmethod
    def standard_error(self, sums: Any) -> float:
        """Largest MC standard error of the returned mean, from the sums."""

    @abstractmethod
    def held_values(
        self, rows: int, n_samples: int, output_shape: Sequence[int], return_samples: bool
    ) -> int:
        """Most float values one request holds at once (a round's outputs, the sums, every
        pass's values with ``return_samples``): checked against the settings before
        sampling."""
