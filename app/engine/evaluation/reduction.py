"""Per-row or aggregate: the ``reduction`` argument of the evaluation metrics (as in
torch-uncertainty, one metric, two forms)."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

Reduction = Literal["mean", "none"]
"""``"mean"``: one 0-dim value over the rows; ``"none"``: one value per row (B,)."""


def reduce_rows(values: Tensor, reduction: Reduction) -> Tensor:
    """(B,) per-row values -> () mean, or the (B,) values themselves with "none"."""
    return values if reduction == "none" else values.mean()
