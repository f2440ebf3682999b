"""Evidence for `mcdrop train`'s regression defaults: held-out coverage and log-likelihood.

For scikit-learn's diabetes set and synthetic sets with known noise (linear and non-linear,
300 to 5,000 rows), each split 80/20 into training and test rows (seeded):
  default   `mcdrop train`'s defaults (its dropout grid, τ fitted on the validation split)
  wide      every point of a wider grid (dropout x length-scale), each with τ fitted the same
            way; the best test log-likelihood of them is the bar the default must come near
Reported per set: the default's test RMSE, mean MC log-likelihood, 95% PI coverage, the wide
grid's best test log-likelihood and the gap, and the default run's wall and CPU seconds.

    python bench/calibration_defaults.py [--sets diabetes linear-2000 ...] [--no-wide]
        [--out docs/calibration-defaults.md]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from app.commands.train import DEFAULT_DROPOUTS, DEFAULT_LENGTH_SCALES
from app.training import TrainConfig, hyper_grid, train
from app.training.mlp import mc_passes
from app.training.noise import HeldOutCheck, held_out_check
from bench.common import markdown_table

WIDE_DROPOUTS = (0.01, 0.05, 0.1, 0.2)
WIDE_LENGTH_SCALES = (0.01, 0.1, 1.0)
TEST_FRACTION = 0.2
TEST_SAMPLES = 100


def _diabetes() -> tuple[Tensor, Tensor, float | None]:
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    x = torch.tensor(data.data, dtype=torch.float32)
    return x, torch.tensor(data.target, dtype=torch.float32).unsqueeze(1), None


def _linear(rows: int) -> Callable[[], tuple[Tensor, Tensor, float | None]]:
    def make() -> tuple[Tensor, Tensor, float | None]:
        generator = torch.Generator().manual_seed(rows)
        x = torch.randn(rows, 5, generator=generator) * 2.0 + 1.0
        weights = torch.tensor([[1.5], [-2.0], [0.5], [0.0], [3.0]])
        noise = 1.0
        y = x @ weights + 10.0 + noise * torch.randn(rows, 1, generator=generator)
        return x, y, noise

    return make


def _nonlinear(rows: int) -> Callable[[], tuple[Tensor, Tensor, float | None]]:
    def make() -> tuple[Tensor, Tensor, float | None]:
        generator = torch.Generator().manual_seed(rows + 1)
        x = torch.rand(rows, 4, generator=generator) * 4.0 - 2.0
        clean = torch.sin(2.0 * x[:, :1]) + 0.5 * x[:, 1:2] ** 2 + x[:, 2:3] * x[:, 3:4]
        noise = 0.3
        return x, 5.0 * clean + 5.0 * noise * torch.randn(rows, 1, generator=generator), 1.5

    return make


DATASETS: dict[str, Callable[[], tuple[Tensor, Tensor, float | None]]] = {
    "diabetes": _diabetes,
    **{f"linear-{n}": _linear(n) for n in (300, 2000, 5000)},
    **{f"nonlinear-{n}": _nonlinear(n) for n in (300, 2000, 5000)},
}


@dataclass(frozen=True)
class Outcome:
    """One training run scored on the test rows."""

    check: HeldOutCheck
    wall_s: float
    cpu_s: float
    label: str


def _split(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(123))
    test = math.floor(x.shape[0] * TEST_FRACTION)
    held, kept = order[:test], order[test:]
    return x[kept], y[kept], x[held], y[held]


def _run(
    x: Tensor,
    y: Tensor,
    xt: Tensor,
    yt: Tensor,
    dropouts: tuple[float, ...],
    scales: tuple[float, ...],
) -> Outcome:
    wall, cpu = time.perf_counter(), time.process_time()
    trained = train("regression", x, y, 1, hyper_grid(dropouts, scales, [None]), TrainConfig())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert trained.noise_variance is not None
    passes = mc_passes(trained.model, xt, TEST_SAMPLES, seed=1)
    check = held_out_check(passes, trained.noise_variance, yt)
    label = f"p={trained.hyper.dropout:g} l={trained.hyper.length_scale:g}"
    return Outcome(check, wall, cpu, label)


def measure(name: str, wide: bool) -> list[object]:
    """One table row for data set `name`."""
    x, y, noise = DATASETS[name]()
    xtr, ytr, xte, yte = _split(x, y)
    default = _run(xtr, ytr, xte, yte, DEFAULT_DROPOUTS, DEFAULT_LENGTH_SCALES)
    row: list[object] = [
        name,
        x.shape[0],
        "-" if noise is None else f"{noise:g}",
        f"{default.check.rmse:.4g}",
        f"{default.check.log_likelihood:.3f}",
        f"{default.check.pi_coverage:.3f}",
        default.label,
    ]
    if wide:
        outcomes = [
            _run(xtr, ytr, xte, yte, (p,), (scale,))
            for p in WIDE_DROPOUTS
            for scale in WIDE_LENGTH_SCALES
        ]
        best = max(outcomes, key=lambda o: o.check.log_likelihood)
        gap = best.check.log_likelihood - default.check.log_likelihood
        row += [f"{best.check.log_likelihood:.3f} ({best.label})", f"{gap:.3f}"]
    row += [f"{default.wall_s:.1f}", f"{default.cpu_s:.1f}"]
    print(" | ".join(str(cell) for cell in row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--no-wide", action="store_true", help="skip the wider grid")
    parser.add_argument("--out", type=Path, help="write the Markdown table here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    header = ["set", "rows", "noise std", "test RMSE", "test LL", "95% PI coverage", "chosen"]
    if not args.no_wide:
        header += ["wide grid best LL", "gap (nats)"]
    header += ["wall s", "CPU s"]
    rows = [measure(name, not args.no_wide) for name in args.sets]
    table = markdown_table(header, rows)
    print(table)
    if args.out is not None:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
