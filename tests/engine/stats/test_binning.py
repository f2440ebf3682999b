"""Linear binning keeps the points' count and sum exactly and interpolates linearly."""

from __future__ import annotations

import torch

from app.engine.stats.binning import grid_sizes, linear_bins


def test_bins_keep_count_and_sum_and_split_between_neighbours() -> None:
    columns = torch.tensor([[0.0, 5.0], [1.25, 5.0], [0.5, 6.0]], dtype=torch.float64)
    step = 0.5
    sizes = grid_sizes(columns, step)
    assert sizes.tolist() == [4, 4]  # spans 1.25 and 1.0: floor(span / step) + 2 grid points
    bins = linear_bins(columns, step, int(sizes.max()))
    # column 0: 0 -> grid 0; 1.25 -> half on grid 2 (1.0), half on grid 3 (1.5); 0.5 -> grid 1
    assert bins.weights[0].tolist() == [1.0, 1.0, 0.5, 0.5]
    assert bins.weights[1].tolist() == [2.0, 0.0, 1.0, 0.0]
    centers = bins.centers()
    torch.testing.assert_close((bins.weights * centers).sum(dim=1), columns.sum(dim=0))
    torch.testing.assert_close(bins.weights.sum(dim=1), torch.full((2,), 3.0, dtype=torch.float64))


def test_binned_sum_of_a_convex_function_is_off_by_the_interpolation_term() -> None:
    # For g(x) = x², linear interpolation adds exactly λ(1 - λ) h² per point.
    columns = torch.rand(50, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    step = 0.1
    bins = linear_bins(columns, step, int(grid_sizes(columns, step).max()))
    binned = (bins.weights * bins.centers() ** 2).sum(dim=1)
    fraction = ((columns - columns.amin(dim=0)) / step) % 1.0
    expected = (columns**2).sum(dim=0) + (fraction * (1 - fraction)).sum(dim=0) * step**2
    torch.testing.assert_close(binned, expected)
