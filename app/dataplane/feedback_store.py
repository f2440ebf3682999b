"""The bounded store of recent predictions awaiting labels, each owned by whoever made it.

A held prediction is found by the ``prediction_id`` the server generated and returned with it,
or by its exact input rows, and only by the same caller (API key) that made it: another key
gets the 404 of an id never held. Bounded by count, by age and by bytes (oldest out first).
Finding does not consume: the data plane scores the labels and then ``settle``s, so refused
labels leave the prediction in place.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from app.engine.predictor import Prediction
from app.engine.stats import ClassificationStats
from app.errors import FeedbackGoneError, FeedbackNotFoundError, InvalidInputError

PREDICTIVE, CONFORMAL = "predictive", "conformal"
"""Names of the regression intervals checked: the MC predictive one, the conformal band."""

Owner = str | None
"""Who made a prediction: a digest of its API key, or None when keys are off (anyone)."""

# Measured with `python -m bench.feedback_store` (RSS growth per held prediction, glibc, torch
# CPU tensors; each figure rounded up): counted bytes come out 1-4% above the measured ones.
TENSOR_OVERHEAD_BYTES = 650
"""Memory of one small CPU tensor beyond its data (Python object, TensorImpl, storage, the
allocator's 64-byte alignment of its data)."""
ROW_OVERHEAD_BYTES = 260
"""Memory per held row beyond its tensors: its 16-byte digest and the row index's entry."""
PREDICTION_OVERHEAD_BYTES = 400
"""Memory per held prediction beyond its tensors and rows (its object, dicts and id)."""


def row_keys(inputs: Tensor) -> list[bytes]:
    """A digest of each input row's exact values (B, ...) -> B keys, to match rows later."""
    flat = inputs.detach().cpu().contiguous().reshape(inputs.shape[0], -1)
    data = flat.numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in data]


def new_prediction_id() -> str:
    """128 random bits, URL-safe: not guessable, so an id proves having seen the answer."""
    return secrets.token_urlsafe(16)


@dataclass
class HeldPrediction:
    """What scoring feedback needs of one served prediction (B rows)."""

    model: str
    created: float
    mean: Tensor
    """(B, D) regression means or (B, C) mean probabilities."""
    variance: Tensor | None
    """(B, D) total predictive variance (regression)."""
    intervals: dict[str, tuple[float, Tensor, Tensor]]
    """interval name -> (nominal level, lower (B, D), upper (B, D))."""
    sets: tuple[float, Tensor] | None
    """(level, (B, C) bool) conformal prediction sets (classification)."""
    keys: list[bytes]
    owner: Owner = None
    prediction_id: str = ""
    used: Tensor = field(init=False)
    """(B,) bool: rows already labelled."""

    def __post_init__(self) -> None:
        self.used = torch.zeros(len(self.keys), dtype=torch.bool)

    def tensors(self) -> list[Tensor]:
        """Every tensor held."""
        held = [self.mean, self.used]
        held += [self.variance] if self.variance is not None else []
        held += [bound for _, lower, upper in self.intervals.values() for bound in (lower, upper)]
        held += [self.sets[1]] if self.sets is not None else []
        return held

    @property
    def nbytes(self) -> int:
        """Memory it holds: its tensors' storages plus the measured per-object overheads."""
        tensors = self.tensors()
        data = sum(t.untyped_storage().nbytes() for t in tensors)
        return (
            data
            + TENSOR_OVERHEAD_BYTES * len(tensors)
            + ROW_OVERHEAD_BYTES * len(self.keys)
            + PREDICTION_OVERHEAD_BYTES
        )


def held_prediction(
    model: str, inputs: Tensor, prediction: Prediction, now: float, owner: Owner = None
) -> HeldPrediction:
    """The parts of `prediction` (for `inputs`) that feedback is scored against, copied so
    that nothing else of the prediction (a larger storage a view shares) stays alive."""
    stats, conformal = prediction.stats, prediction.conformal
    keys = row_keys(inputs)

    def own(tensor: Tensor) -> Tensor:
        return tensor.detach().cpu().clone(memory_format=torch.contiguous_format)

    if isinstance(stats, ClassificationStats):
        sets = None
        if conformal is not None and conformal.sets is not None:
            sets = (conformal.level, own(conformal.sets))
        return HeldPrediction(model, now, own(stats.mean), None, {}, sets, keys, owner)
    intervals = {PREDICTIVE: (prediction.ci_level, own(stats.pi_lower), own(stats.pi_upper))}
    if conformal is not None and conformal.lower is not None and conformal.upper is not None:
        intervals[CONFORMAL] = (conformal.level, own(conformal.lower), own(conformal.upper))
    mean, variance = own(stats.mean), own(stats.variance)
    return HeldPrediction(model, now, mean, variance, intervals, None, keys, owner)


class FeedbackStore:
    """Recent predictions by id: at most ``max_predictions`` of them, ``max_bytes`` of memory
    (``HeldPrediction.nbytes``), none older than ``max_age_s``; and an index of their rows by
    (owner, model, exact input values)."""

    def __init__(
        self,
        max_predictions: int,
        max_age_s: float,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
        new_id: Callable[[], str] = new_prediction_id,
    ) -> None:
        self.max_predictions = max_predictions
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self.clock = clock
        self.new_id = new_id
        self.nbytes = 0
        """Memory of the held predictions (the sum of their ``nbytes``)."""
        self._held: OrderedDict[str, HeldPrediction] = OrderedDict()
        self._rows: dict[tuple[Owner, str, bytes], tuple[str, int]] = {}
        self._gone: OrderedDict[str, tuple[Owner, str, str]] = OrderedDict()
        """Ids that left the store -> (owner, model, why), for the 410's reason."""

    def __len__(self) -> int:
        return len(self._held)

    def remember(
        self, owner: Owner, model: str, inputs: Tensor, prediction: Prediction
    ) -> str | None:
        """Hold one served prediction for ``owner``; its new id, or None when the store is off
        or the prediction alone is larger than ``max_bytes``."""
        if self.max_predictions == 0:
            return None
        held = held_prediction(model, inputs, prediction, self.clock(), owner)
        size = held.nbytes
        if size > self.max_bytes:
            return None
        held.prediction_id = self.new_id()
        self._expire()
        while self._held and (
            len(self._held) >= self.max_predictions or self.nbytes + size > self.max_bytes
        ):
            self._drop(next(iter(self._held.values())), "pushed out by newer predictions")
        self._held[held.prediction_id] = held
        self.nbytes += size
        for row, digest in enumerate(held.keys):
            self._rows[(owner, model, digest)] = (held.prediction_id, row)
        return held.prediction_id

    def find(
        self, owner: Owner, model: str, prediction_id: str, rows: int
    ) -> tuple[HeldPrediction, Tensor]:
        """``owner``'s held prediction and its rows not yet labelled (then ``settle`` it)."""
        self._expire()
        held = self._held.get(prediction_id)
        if held is None or held.owner != owner or held.model != model:
            raise self._missing(owner, model, prediction_id)
        if rows != len(held.keys):
            raise InvalidInputError(
                "targets",
                f"has {rows} entries, prediction '{prediction_id}' had {len(held.keys)} rows",
            )
        return held, (~held.used).nonzero().flatten()

    def find_rows(
        self, owner: Owner, model: str, inputs: Tensor
    ) -> list[tuple[HeldPrediction, int]]:
        """For each input row, ``owner``'s latest held prediction of exactly that row (then
        ``settle_rows`` them)."""
        self._expire()
        found = []
        for index, digest in enumerate(row_keys(inputs)):
            place = self._rows.get((owner, model, digest))
            held = self._held.get(place[0]) if place is not None else None
            if place is None or held is None or bool(held.used[place[1]]):
                raise FeedbackNotFoundError(
                    f"inputs[{index}]: no recent prediction of '{model}' for this row"
                )
            found.append((held, place[1]))
        return found

    def settle(self, held: HeldPrediction) -> None:
        """``held`` (from ``find``) received its feedback: it can take no more. Gone (410) if
        it left the store meanwhile (another feedback settled it first, or it was pushed out)."""
        if self._held.get(held.prediction_id) is not held:
            raise self._missing(held.owner, held.model, held.prediction_id)
        self._drop(held, "already received its feedback")

    def settle_rows(self, found: list[tuple[HeldPrediction, int]]) -> None:
        """The rows (from ``find_rows``) are labelled; 404 for a row labelled or dropped
        meanwhile (then none is marked)."""
        for index, (held, row) in enumerate(found):
            if self._held.get(held.prediction_id) is not held or bool(held.used[row]):
                raise FeedbackNotFoundError(
                    f"inputs[{index}]: no recent prediction of '{held.model}' for this row"
                )
        for held, row in found:
            held.used[row] = True
            self._rows.pop((held.owner, held.model, held.keys[row]), None)

    def _missing(self, owner: Owner, model: str, prediction_id: str) -> Exception:
        gone = self._gone.get(prediction_id)
        if gone is not None and gone[:2] == (owner, model):
            return FeedbackGoneError(f"prediction '{prediction_id}' of model '{model}' {gone[2]}")
        return FeedbackNotFoundError(
            f"no recent prediction of model '{model}' has id '{prediction_id}'"
        )

    def _expire(self) -> None:
        oldest = self.clock() - self.max_age_s
        while self._held:
            held = next(iter(self._held.values()))
            if held.created >= oldest:
                break
            self._drop(held, f"is older than {self.max_age_s:g} s (feedback_max_age_s)")

    def _drop(self, held: HeldPrediction, reason: str) -> None:
        del self._held[held.prediction_id]
        self.nbytes -= held.nbytes
        for row, digest in enumerate(held.keys):
            key = (held.owner, held.model, digest)
            if self._rows.get(key) == (held.prediction_id, row):
                del self._rows[key]
        self._gone[held.prediction_id] = (held.owner, held.model, reason)
        while len(self._gone) > max(1, self.max_predictions):
            self._gone.popitem(last=False)
