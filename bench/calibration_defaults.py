"""Evidence for `mcdrop train`'s regression defaults: held-out coverage and log-likelihood.

For scikit-learn's diabetes set and synthetic sets with known noise (linear and non-linear,
300 to 5,000 rows), over K seeded random 80/20 train/test splits per set (the protocol of
Hernández-Lobato & Adams 2015 and Gal & Ghahramani 2016; K = 20 up to 500 rows, fewer for the
large sets, `--splits` overrides). On every split:
  wide      every point of a wider grid (dropout x length-scale) is trained on the training
            rows as `mcdrop train` trains it (τ fitted on its own validation split) and scored
            on the test rows (100 MC passes)
  default   `mcdrop train`'s defaults: of the default grid's points, the one with the best
            VALIDATION log-likelihood, exactly as `mcdrop train` chooses (its model is that
            point's wide run: `train` is deterministic and a grid refits its chosen point
            exactly as the point trains alone; `--time-default` checks this and times it)
Reported per set: the default's mean test RMSE, test LL ± s.e., 95% PI coverage ± s.e. and
pooled over all test rows; the wide grid's ONE point with the best mean test LL over the
splits and the gap to the default (± s.e. of the paired per-split difference).

    python -m bench.calibration_defaults [--sets diabetes linear-2000 ...] [--splits K]
        [--time-default linear-2000 ...] [--jobs 2] [--out table.md]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from app.commands.train import DEFAULT_DROPOUTS, DEFAULT_LENGTH_SCALES
from app.training import TrainConfig, hyper_grid, train
from app.training.mlp import mc_passes
from app.training.noise import HeldOutCheck, held_out_check
from bench.calibration_summary import best_fixed_point, mean_se, paired_gap, pooled_coverage
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
SPLITS: dict[str, int] = {
    "diabetes": 20,
    "linear-300": 20,
    "nonlinear-300": 20,
    "linear-2000": 5,
    "nonlinear-2000": 5,
    "linear-5000": 3,
    "nonlinear-5000": 3,
}
"""Random train/test splits per set: 20 for the small sets (as the UCI protocol), fewer where
a split's 400-1,000 test rows already pin the numbers down and a run costs more."""


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

    @property
    def covered(self) -> int:
        """Test rows inside their 95% predictive interval."""
        return round(self.check.pi_coverage * self.check.rows)


def split_rows(rows: int, seed: int) -> tuple[Tensor, Tensor]:
    """(train indices, test indices) of random split `seed`: a seeded shuffle, 20% test."""
    order = torch.randperm(rows, generator=torch.Generator().manual_seed(seed))
    test = math.floor(rows * TEST_FRACTION)
    return order[test:], order[:test]


def _run(
    x: Tensor, y: Tensor, split: int, dropouts: Sequence[float], scales: Sequence[float]
) -> Outcome:
    kept, held = split_rows(x.shape[0], split)
    wall, cpu = time.perf_counter(), time.process_time()
    grid = hyper_grid(dropouts, scales, [None])
    trained = train("regression", x[kept], y[kept], 1, grid, TrainConfig())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert trained.noise_variance is not None and trained.check is not None
    passes = mc_passes(trained.model, x[held], TEST_SAMPLES, seed=1)
    check = held_out_check(passes, trained.noise_variance, y[held])
    hyper = trained.hyper
    return Outcome(
        hyper.dropout, hyper.length_scale, trained.check.log_likelihood, check, wall, cpu
    )


Task = tuple[str, int, tuple[float, ...], tuple[float, ...]]
"""(set, split, dropouts, length-scales) of one training run."""


def _point(task: Task) -> tuple[Task, Outcome]:
    """One training run of a set on one split (a wide-grid point, or the default grid)."""
    torch.set_num_threads(1)
    name, split, dropouts, scales = task
    x, y, _ = DATASETS[name]()
    return task, _run(x, y, split, dropouts, scales)


def default_choice(split_runs: Sequence[Outcome]) -> Outcome:
    """`mcdrop train`'s choice on one split: the default grid's point with the best
    validation log-likelihood (`split_runs` in grid order; ties go to the first, as in train)."""
    grid = [
        o
        for o in split_runs
        if o.dropout in DEFAULT_DROPOUTS and o.length_scale in DEFAULT_LENGTH_SCALES
    ]
    return max(grid, key=lambda o: o.validation_ll)


def table_row(name: str, runs: Sequence[Sequence[Outcome]]) -> list[object]:
    """One row of the table for data set `name`; `runs[k]` are split k's wide-grid runs in
    grid order."""
    _, _, noise = DATASETS[name]()
    defaults = [default_choice(split_runs) for split_runs in runs]
    checks = [o.check for o in defaults]
    lls = [c.log_likelihood for c in checks]
    per_point = {o.label: [r[i].check.log_likelihood for r in runs] for i, o in enumerate(runs[0])}
    best = best_fixed_point(per_point)
    chosen = Counter(o.label for o in defaults).most_common(1)[0]
    pooled = pooled_coverage([o.covered for o in defaults], [c.rows for c in checks])
    return [
        name,
        DATASETS[name]()[0].shape[0],
        "-" if noise is None else f"{noise:g}",
        len(runs),
        checks[0].rows,
        f"{mean_se([c.rmse for c in checks]).mean:.4g}",
        mean_se(lls).text(),
        mean_se([c.pi_coverage for c in checks]).text(),
        f"{pooled:.3f}",
        f"{chosen[0]} ({chosen[1]}/{len(runs)})",
        f"{mean_se(per_point[best]).mean:.3f} ({best})",
        paired_gap(per_point[best], lls).text(),
    ]


HEADER = [
    "set",
    "rows",
    "noise std",
    "splits",
    "test rows / split",
    "test RMSE",
    "test LL",
    "95% PI coverage",
    "pooled coverage",
    "default's most chosen point",
    "wide grid's best fixed point: mean LL",
    "gap (nats)",
]


def point_table(sets: Sequence[str], runs: dict[str, list[list[Outcome]]]) -> str:
    """Mean test log-likelihood of every wide-grid point (columns) per set (rows)."""
    labels = [o.label for o in runs[sets[0]][0]]
    rows = [
        [
            name,
            *(
                f"{mean_se([r[i].check.log_likelihood for r in runs[name]]).mean:.3f}"
                for i in range(len(labels))
            ),
        ]
        for name in sets
    ]
    return markdown_table(["set", *labels], rows)


def _tasks(sets: Sequence[str], splits: int | None, timed: Sequence[str]) -> list[Task]:
    """Every wide-grid point on every split, and the default grid on split 0 of `timed`;
    smallest sets first."""
    tasks: list[Task] = [
        (name, split, (p,), (scale,))
        for name in sets
        for split in range(splits or SPLITS[name])
        for p in WIDE_DROPOUTS
        for scale in WIDE_LENGTH_SCALES
    ]
    tasks += [(name, 0, DEFAULT_DROPOUTS, DEFAULT_LENGTH_SCALES) for name in timed]
    return sorted(tasks, key=lambda t: len(DATASETS[t[0]]()[0]))


def _report(task: Task, outcome: Outcome) -> None:
    print(
        f"  {task[0]} split {task[1]} {task[2]} x {task[3]}: val LL {outcome.validation_ll:.3f}"
        f" test LL {outcome.check.log_likelihood:.3f} coverage {outcome.check.pi_coverage:.3f}"
        f" RMSE {outcome.check.rmse:.4g} chosen {outcome.label}"
        f" wall {outcome.wall_s:.1f} s cpu {outcome.cpu_s:.1f} s",
        flush=True,
    )


def _collect(
    sets: Sequence[str], splits: int | None, timed_sets: Sequence[str], jobs: int
) -> tuple[dict[str, list[list[Outcome]]], dict[str, Outcome]]:
    """(set -> split -> wide-grid runs in grid order, set -> timed default-grid run)."""
    wide: dict[str, list[list[Outcome]]] = {
        name: [[] for _ in range(splits or SPLITS[name])] for name in sets
    }
    timed: dict[str, Outcome] = {}
    tasks = _tasks(sets, splits, timed_sets)
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        for task, outcome in pool.imap_unordered(_point, tasks):
            _report(task, outcome)
            if len(task[2]) * len(task[3]) > 1:
                timed[task[0]] = outcome
            else:
                wide[task[0]][task[1]].append(outcome)
    grid_order = [(p, scale) for p in WIDE_DROPOUTS for scale in WIDE_LENGTH_SCALES]
    for split_runs in (runs for name in sets for runs in wide[name]):
        split_runs.sort(key=lambda o: grid_order.index((o.dropout, o.length_scale)))
    return wide, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--splits", type=int, help="random splits for every set (default: SPLITS)")
    parser.add_argument(
        "--time-default",
        nargs="*",
        default=["linear-2000"],
        help="sets whose default grid is also run as `mcdrop train` runs it (split 0), to time"
        " it and check that it equals the choice made from the wide runs",
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--out", type=Path, help="write the Markdown tables here")
    args = parser.parse_args()
    started = time.perf_counter()
    timed_sets = [name for name in args.time_default if name in args.sets]
    wide, timed = _collect(args.sets, args.splits, timed_sets, args.jobs)
    for name, outcome in timed.items():
        assert outcome.check == default_choice(wide[name][0]).check, (outcome, name)
        print(f"default grid on {name}, split 0: wall {outcome.wall_s:.1f} s, ", end="")
        print(f"CPU {outcome.cpu_s:.1f} s")
    rows = [table_row(name, wide[name]) for name in args.sets]
    tables = markdown_table(HEADER, rows) + "\n\n" + point_table(args.sets, wide)
    print(tables)
    print(f"total wall time {time.perf_counter() - started:.0f} s")
    if args.out is not None:
        args.out.write_text(tables + "\n")


if __name__ == "__main__":
    main()
