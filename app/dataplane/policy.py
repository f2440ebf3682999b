"""Request policy: a request's Monte Carlo options, the model's defaults and the server's limits
turned into one engine request, or refused with the reason.

Pure: no metrics, no event loop, no I/O. Every route builds its engine request here, so defaults
and limits cannot drift apart between predict, evaluate and the routes that come later.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from app.config import DEFAULT_CI_LEVEL, Settings
from app.engine.device import resolve_dtype
from app.engine.inputs import check_input_range
from app.engine.predictor import PredictionRequest
from app.errors import InvalidInputError
from app.inputs.base import Rows
from app.registry.served import ServedModel
from app.tasks.base import StreamedTask

MIN_TOLERANCE = 1e-12
"""Smallest adaptive tolerance: far below what float32 passes can resolve, so a smaller one
could only mean "sample to the cap" (ask for a fixed N instead)."""


@dataclass(frozen=True)
class PredictOptions:
    """MC options of one request, before defaults are applied."""

    n_samples: int | Literal["auto"] | None = None
    seed: int | None = None
    ci_level: float | None = None
    return_samples: bool = False
    tolerance: float | None = None
    """Adaptive N only: target MC standard error (the setting's default when None)."""
    max_n_samples: int | None = None
    """Adaptive N only: cap on the samples (the model's maximum when None)."""


def _check_samples(field: str, value: int, maximum: int) -> None:
    if value < 1:
        raise InvalidInputError(field, f"must be at least 1, got {value}")
    if value > maximum:
        raise InvalidInputError(field, f"{value} exceeds this model's maximum of {maximum}")


class RequestPolicy:
    """Defaults and limits of the server's settings, applied to one request at a time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.input_limit = float(torch.finfo(resolve_dtype(settings.dtype)).max)
        """Largest input magnitude the models' dtype holds; beyond it a row overflows."""

    def prediction(
        self, model: ServedModel, rows: Rows, options: PredictOptions
    ) -> PredictionRequest:
        """The engine request of a prediction: at most ``max_rows_per_request`` rows and
        ``max_request_sample_rows`` rows x samples."""
        request = self._request(model, rows, options, self.settings.max_rows_per_request)
        sample_rows = int(request.inputs.shape[0]) * request.n_samples
        limit = self.settings.max_request_sample_rows
        if sample_rows > limit:
            raise InvalidInputError(
                "n_samples",
                f"{request.inputs.shape[0]} rows x {request.n_samples} samples = {sample_rows} "
                f"exceeds the limit of {limit} (max_request_sample_rows)",
            )
        self._check_held_values(model, request)
        return request

    def _check_held_values(self, model: ServedModel, request: PredictionRequest) -> None:
        """Refuse, before sampling, a dense task's request that would hold more values at once
        than ``max_dense_values`` (its worst-case memory, from its rows, N and output size)."""
        if not isinstance(model.task, StreamedTask):
            return
        rows = int(request.inputs.shape[0])
        held = model.task.held_values(
            rows, request.n_samples, model.output_shape, request.return_samples
        )
        limit = self.settings.max_dense_values
        if held > limit:
            shape = " x ".join(map(str, model.task.value_dims(model.output_shape)))
            raise InvalidInputError(
                "inputs",
                f"{rows} rows of {shape} outputs x {request.n_samples} samples"
                f"{' (return_samples)' if request.return_samples else ''} would hold {held} "
                f"values at once, over the limit of {limit} (max_dense_values): send fewer "
                "rows or passes",
            )

    def evaluation(
        self, model: ServedModel, rows: Rows, options: PredictOptions
    ) -> PredictionRequest:
        """The engine request of an evaluation: at most ``max_rows_per_evaluation`` rows, and
        ``max_evaluation_values`` rows x samples x outputs (every pass is held at once, so
        this bounds the evaluation's memory)."""
        request = self._request(model, rows, options, self.settings.max_rows_per_evaluation)
        rows_n = int(request.inputs.shape[0])
        values = rows_n * request.n_samples * math.prod(model.output_shape)
        limit = self.settings.max_evaluation_values
        if values > limit:
            raise InvalidInputError(
                "n_samples",
                f"{rows_n} rows x {request.n_samples} samples x {math.prod(model.output_shape)} "
                f"outputs = {values} values exceeds the limit of {limit} (max_evaluation_values)",
            )
        return request

    def targets(self, model: ServedModel, targets: Sequence[Any]) -> Tensor:
        """The targets of an evaluation or a feedback, parsed (`parse_targets`), and for
        regression within the model dtype's range like the inputs (``targets[i]`` names the
        entry): a prediction cannot come near a larger one, and its scores would overflow."""
        parsed = model.task.parse_targets(targets, model.card.labels, model.output_shape)
        if parsed.is_floating_point():  # regression values (label sets are 0 or 1)
            check_input_range(parsed, self.input_limit, field="targets")
        return parsed

    def feedback_rows(self, model: ServedModel, rows: Rows) -> Tensor:
        """The rows of a feedback as the prediction saw them (same limit and checks), so that
        their values match the held predictions bit for bit."""
        return model.rows_to_tensor(rows, self.settings.max_rows_per_request)

    def ranking(self, model: ServedModel, rows: Rows, options: PredictOptions) -> PredictionRequest:
        """The engine request of a rank: at most ``max_rows_per_rank`` rows (sampled in steps
        of ``max_batch_rows`` folded rows, keeping only the best, so rows bound its memory)."""
        return self._request(model, rows, options, self.settings.max_rows_per_rank)

    def _request(
        self, model: ServedModel, rows: Rows, options: PredictOptions, max_rows: int
    ) -> PredictionRequest:
        n_samples, tolerance = self.sample_budget(model, options)
        ci_level = self.ci_level(options)
        inputs = model.rows_to_tensor(rows, max_rows)
        return PredictionRequest(
            inputs=inputs,
            n_samples=n_samples,
            ci_level=ci_level,
            seed=options.seed,
            return_samples=options.return_samples,
            tolerance=tolerance,
        )

    def ci_level(self, options: PredictOptions) -> float:
        """The request's interval level (the setting's default when none), checked."""
        level = options.ci_level if options.ci_level is not None else self.settings.default_ci_level
        return checked_ci_level(level)

    def sample_budget(
        self, model: ServedModel, options: PredictOptions
    ) -> tuple[int, float | None]:
        """(N, None) for a fixed N; (cap, tolerance) for ``"auto"``. Checks the model's limits."""
        limits = model.card.n_samples
        if options.n_samples == "auto":
            tolerance = options.tolerance or self.settings.default_tolerance
            if not tolerance >= MIN_TOLERANCE:
                raise InvalidInputError(
                    "tolerance", f"must be at least {MIN_TOLERANCE:g}, got {tolerance!r}"
                )
            cap = options.max_n_samples if options.max_n_samples is not None else limits.max
            _check_samples("max_n_samples", cap, limits.max)
            return cap, tolerance
        if options.tolerance is not None or options.max_n_samples is not None:
            field = "tolerance" if options.tolerance is not None else "max_n_samples"
            raise InvalidInputError(field, 'only applies with "n_samples": "auto"')
        n_samples = options.n_samples if options.n_samples is not None else limits.default
        _check_samples("n_samples", n_samples, limits.max)
        return n_samples, None


def checked_ci_level(level: float) -> float:
    """An interval level strictly inside (0, 1), with both quantiles (1 -+ level) / 2 too."""
    if not 0.0 < level < 1.0:
        raise InvalidInputError("ci_level", f"must be between 0 and 1 (exclusive), got {level}")
    if not (1.0 - level) / 2.0 > 0.0 or not (1.0 + level) / 2.0 < 1.0:
        raise InvalidInputError("ci_level", f"{level!r} is too close to 0 or 1")
    return level


def local_request(
    model: ServedModel,
    inputs: Tensor,
    *,
    n_samples: int | None = None,
    seed: int | None = None,
    ci_level: float | None = None,
    return_samples: bool = False,
) -> PredictionRequest:
    """The engine request of a command run on the user's own machine (evaluate, calibrate,
    conformal, check-model, rank, predict without a server): the model card's default N and
    :data:`DEFAULT_CI_LEVEL` where none is given. No server limits apply: the rows are the
    user's own file, on the user's own machine."""
    n = n_samples if n_samples is not None else model.card.n_samples.default
    if n < 1:
        raise InvalidInputError("n_samples", f"must be at least 1, got {n}")
    return PredictionRequest(
        inputs=inputs,
        n_samples=n,
        ci_level=checked_ci_level(ci_level if ci_level is not None else DEFAULT_CI_LEVEL),
        seed=seed,
        return_samples=return_samples,
    )
