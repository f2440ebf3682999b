"""scripts/export_csv.py writes the demo splits as CSV files the CLI reads back."""

from __future__ import annotations

from pathlib import Path

from app.commands.tabular import labelled_rows, read_csv
from tests.support import load_script


def test_exports_every_split_with_its_label_column(tmp_path: Path) -> None:
    load_script("export_csv").export(tmp_path)
    sizes = {path.name: len(read_csv(path).rows) for path in sorted(tmp_path.iterdir())}
    assert sizes == {
        "diabetes-test.csv": 111,
        "diabetes-train.csv": 331,
        "digits-test-0to4.csv": 226,
        "digits-test-5to9.csv": 224,
        "digits-test.csv": 450,
        "digits-train.csv": 1347,
    }
    inputs, labels = labelled_rows(tmp_path / "digits-test-5to9.csv", "digit", [64])
    assert inputs.shape == (224, 64) and labels is not None and set(labels) == set("56789")
    columns = read_csv(tmp_path / "diabetes-test.csv").columns
    assert columns[0] == "age" and columns[-1] == "progression" and len(columns) == 11
