"""Write scikit-learn's bundled digits and diabetes data as CSV files for the CLI examples.

The splits are the demo models' (`train_demo_models.digits_split` / `diabetes_split`), so
evaluating a bundled model on a `*-test.csv` file scores it on rows it was not trained on:
- `digits-train.csv`, `digits-test.csv`: pixel0..pixel63 (raw 0..16), then `digit`;
- `digits-test-0to4.csv`, `digits-test-5to9.csv`: the test images of those digits only;
- `diabetes-train.csv` (training and validation rows), `diabetes-test.csv`: the ten
  features `age` .. `s6`, then `progression`.

Usage: `python scripts/export_csv.py [--out data]`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes
from train_demo_models import diabetes_split, digits_split

from app.commands.tabular import write_csv

PIXELS = [f"pixel{i}" for i in range(64)]


def _write(path: Path, columns: list[str], x: np.ndarray, y: np.ndarray, cast: type) -> None:
    rows = [[*map(float, features), cast(label)] for features, label in zip(x, y, strict=True)]
    write_csv(path, columns, rows)
    print(f"{path}: {len(rows)} rows")


def export(out: Path) -> None:
    """Write every file into `out`."""
    x_train, x_test, y_train, y_test = digits_split()
    digit = [*PIXELS, "digit"]
    _write(out / "digits-train.csv", digit, x_train, y_train, int)
    _write(out / "digits-test.csv", digit, x_test, y_test, int)
    seen = y_test < 5
    _write(out / "digits-test-0to4.csv", digit, x_test[seen], y_test[seen], int)
    _write(out / "digits-test-5to9.csv", digit, x_test[~seen], y_test[~seen], int)
    x_fit, x_val, x_held, y_fit, y_val, y_held = diabetes_split()
    columns = [*load_diabetes().feature_names, "progression"]
    x_all, y_all = np.concatenate([x_fit, x_val]), np.concatenate([y_fit, y_val])
    _write(out / "diabetes-train.csv", columns, x_all, y_all, float)
    _write(out / "diabetes-test.csv", columns, x_held, y_held, float)


def main(argv: list[str] | None = None) -> None:
    """Parse the flags and write the files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("data"))
    export(parser.parse_args(argv).out)


if __name__ == "__main__":
    main()
