"""Evidence for `mcdrop train`'s regression defaults: held-out coverage and log-likelihood.

For scikit-learn's diabetes set and synthetic sets with known noise (linear and non-linear,
300 to 5,000 rows), each split 80/20 into training and test rows (seeded):
  default   `mcdrop train`'s defaults (its dropout grid, τ fitted on the validation split)
  wide      every point of a wider grid (dropout x length-scale), each with τ fitted the same
            way; the best test log-likelihood of them is the bar the default must come near
Reported per set: the default's test RMSE, mean MC log-likelihood, 95% PI coverage, the wide
grid's best test log-likelihood and the gap, and the default run's wall and CPU seconds.

    python -m bench.calibration_defaults [--sets diabetes linear-2000 ...]
        [--time-default linear-2000 ...] [--out docs/calibration-defaults.md]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import time
from collections.abc import Callable, Sequence
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
WIDE_LENGTH_SCALES = (0.01, 1.0)
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
    """One grid point trained (τ fitted on its validation split) and scored on the test rows."""

    dropout: float
    length_scale: float
    validation_ll: float
    check: HeldOutCheck
    wall_s: float
    cpu_s: float

    @property
    def label(self) -> str:
        return f"p={self.dropout:g} l={self.length_scale:g}"


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
    dropouts: Sequence[float],
    scales: Sequence[float],
) -> Outcome:
    wall, cpu = time.perf_counter(), time.process_time()
    trained = train("regression", x, y, 1, hyper_grid(dropouts, scales, [None]), TrainConfig())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert trained.noise_variance is not None and trained.check is not None
    passes = mc_passes(trained.model, xt, TEST_SAMPLES, seed=1)
    check = held_out_check(passes, trained.noise_variance, yt)
    hyper = trained.hyper
    return Outcome(
        hyper.dropout, hyper.length_scale, trained.check.log_likelihood, check, wall, cpu
    )


Task = tuple[str, tuple[float, ...], tuple[float, ...]]
"""(set, dropouts, length-scales) of one training run."""


def _point(task: Task) -> tuple[Task, Outcome]:
    """One training run of a set (a wide-grid point, or the default grid) in a worker."""
    torch.set_num_threads(1)
    name, dropouts, scales = task
    x, y, _ = DATASETS[name]()
    return task, _run(*_split(x, y), dropouts, scales)


def table_row(name: str, wide: list[Outcome], timed: Outcome | None) -> list[object]:
    """One table row for data set `name` from its wide-grid runs.

    `train` is deterministic and a grid refits its best point exactly as that point trained
    alone, so the default's model is the wide run of the default-grid point with the best
    validation log-likelihood; `timed` (the default grid run as `mcdrop train` does) times it
    and must agree.
    """
    _, _, noise = DATASETS[name]()
    grid = [
        o for o in wide if o.dropout in DEFAULT_DROPOUTS and o.length_scale in DEFAULT_LENGTH_SCALES
    ]
    default = max(grid, key=lambda o: o.validation_ll)
    best = max(wide, key=lambda o: o.check.log_likelihood)
    if timed is not None:
        assert timed.check == default.check, (timed, default)
    return [
        name,
        DATASETS[name]()[0].shape[0],
        "-" if noise is None else f"{noise:g}",
        f"{default.check.rmse:.4g}",
        f"{default.check.log_likelihood:.3f}",
        f"{default.check.pi_coverage:.3f}",
        default.label,
        f"{best.check.log_likelihood:.3f} ({best.label})",
        f"{best.check.log_likelihood - default.check.log_likelihood:.3f}",
        "-" if timed is None else f"{timed.wall_s:.1f}",
        "-" if timed is None else f"{timed.cpu_s:.1f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument(
        "--time-default",
        nargs="*",
        default=["linear-2000"],
        help="sets whose default grid is also run as `mcdrop train` runs it, to time it",
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--out", type=Path, help="write the Markdown table here")
    args = parser.parse_args()
    tasks: list[Task] = [
        (name, (p,), (scale,))
        for name in args.sets
        for p in WIDE_DROPOUTS
        for scale in WIDE_LENGTH_SCALES
    ]
    timing: list[Task] = [
        (name, DEFAULT_DROPOUTS, DEFAULT_LENGTH_SCALES) for name in args.time_default
    ]
    wide: dict[str, list[Outcome]] = {name: [] for name in args.sets}
    timed: dict[str, Outcome] = {}
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        largest_first = sorted(timing + tasks, key=lambda t: -len(DATASETS[t[0]]()[0]))
        for task, outcome in pool.imap_unordered(_point, largest_first):
            name = task[0]
            print(
                f"  {name} {task[1]} x {task[2]}: val LL {outcome.validation_ll:.3f} test LL "
                f"{outcome.check.log_likelihood:.3f} coverage {outcome.check.pi_coverage:.3f}"
                f" RMSE {outcome.check.rmse:.4g}"
                f" chosen {outcome.label} wall {outcome.wall_s:.1f} s cpu {outcome.cpu_s:.1f} s",
                flush=True,
            )
            if len(task[1]) * len(task[2]) > 1:
                timed[name] = outcome
            elif name in wide:
                wide[name].append(outcome)
    grid_order = [(p, scale) for p in WIDE_DROPOUTS for scale in WIDE_LENGTH_SCALES]
    for outcomes in wide.values():
        outcomes.sort(key=lambda o: grid_order.index((o.dropout, o.length_scale)))
    header = [
        "set",
        "rows",
        "noise std",
        "test RMSE",
        "test LL",
        "95% PI coverage",
        "chosen",
        "wide grid best LL",
        "gap (nats)",
        "default wall s",
        "default CPU s",
    ]
    rows = [table_row(name, wide[name], timed.get(name)) for name in args.sets]
    table = markdown_table(header, rows)
    print(table)
    if args.out is not None:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
