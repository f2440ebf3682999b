"""The first-positions cut: the kept positions' numbers, full-length masks, and clean exits."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from app.engine.positions import (
    cut_from,
    cut_length,
    drawn_shape,
    first_query_only,
    keep_first_positions,
    keep_first_query,
)


class _Block(nn.Module):
    """Token mixing (a mean over positions) then a position-wise residual block."""

    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Linear(4, 4)
        self.after = _After()

    def forward(self, x: Tensor) -> Tensor:
        mixed = self.mix(x.mean(dim=1, keepdim=True).expand_as(x) + x)
        out: Tensor = self.after(mixed, x)
        return out


class _After(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Linear(4, 4)
        self.seen: list[tuple[int, ...]] = []
        self.fail = False

    def forward(self, mixed: Tensor, residual: Tensor) -> Tensor:
        self.seen.append(drawn_shape(tuple(mixed.shape[1:])))
        if self.fail:
            raise RuntimeError("boom")
        return torch.relu(self.dense(mixed)) + residual


def test_cut_keeps_the_first_positions_numbers_and_draws_full_length_masks() -> None:
    torch.manual_seed(0)
    block = _Block()
    x = torch.randn(3, 7, 4)
    whole = block(x)
    assert block.after.seen == [(7, 4)] and cut_length() is None
    keep_first_positions(block, block.after, positions=2)
    cut = block(x)
    assert cut.shape == (3, 2, 4)
    torch.testing.assert_close(cut, whole[:, :2])
    assert block.after.seen[-1] == (7, 4)  # (2, 4) activations draw the masks of all 7
    assert cut_length() is None  # over once the layer returned
    assert drawn_shape((2, 4)) == (2, 4)


def test_cut_ends_when_the_layer_raises() -> None:
    block = _Block()
    keep_first_positions(block, block.after)
    block.after.fail = True
    with pytest.raises(RuntimeError, match="boom"):
        block(torch.randn(2, 5, 4))
    assert cut_length() is None


class _Attention(nn.Module):
    """Scores of its queries (the first alone when cut) against every key."""

    def __init__(self) -> None:
        super().__init__()
        self.query = nn.Linear(4, 4)
        self.key = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        queries = self.query(x).view(*x.shape[:2], 2, 2)  # the model's reshape of every position
        first = 1 if first_query_only(self) else x.shape[1]
        scores: Tensor = queries.flatten(2)[:, :first] @ self.key(x).transpose(1, 2)
        return scores


def test_query_cut_scores_the_first_query_only_with_the_same_numbers() -> None:
    torch.manual_seed(0)
    attention = _Attention()
    x = torch.randn(3, 7, 4)
    whole = attention(x)
    assert whole.shape == (3, 7, 7) and not first_query_only(attention)
    keep_first_query(attention, attention.query)
    seen: list[tuple[int, ...]] = []  # after the cut's own hook: what the projection computes
    attention.query.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape))
    cut = attention(x)
    assert first_query_only(attention)
    assert seen == [(3, 1, 4)]  # the projection ran on the first position
    torch.testing.assert_close(cut, whole[:, :1])


def test_cut_from_draws_full_length_masks_inside_and_restores_the_outer_cut() -> None:
    with cut_from(9):
        assert drawn_shape((4, 1, 9)) == (4, 9, 9)  # (heads, first query, keys)
        with cut_from(5):
            assert cut_length() == 5
        assert cut_length() == 9
    assert cut_length() is None and drawn_shape((4, 1, 9)) == (4, 1, 9)
