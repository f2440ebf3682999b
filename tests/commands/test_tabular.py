"""Labelled CSV tables: features reshaped to the input shape, labels kept as text."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.commands.tabular import TableError, feature_rows, labelled_rows, read_csv, write_csv


def test_round_trip_and_reshape(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    write_csv(path, ["a", "label", "b", "c", "d"], [[0.1, "cat", 2, 3, 4], [5, "dog", 6, 7, 8.5]])
    inputs, labels = labelled_rows(path, "label", [2, 2])
    assert inputs.shape == (2, 2, 2) and inputs[0].tolist() == [[0.1, 2.0], [3.0, 4.0]]
    assert labels == ["cat", "dog"]


def test_unlabelled_rows(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    write_csv(path, ["a", "b"], [[1, 2]])
    inputs, labels = labelled_rows(path, None, [2])
    assert inputs.tolist() == [[1.0, 2.0]] and labels is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b\n", "at least one data row"),
        ("a,b\n1,2\n3\n", "line 3: 1 cells, the header has 2"),
        ("a,b\n1,x\n", "line 2, column 'b': 'x' is not a number"),
        ("a,b\n1,inf\n", "not finite"),
        ("a,b,c\n1,2,3\n", "3 feature columns"),
    ],
)
def test_errors_name_the_line_and_column(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(TableError, match=message):
        labelled_rows(path, None, [2])


def test_a_variable_axis_is_refused_with_the_way_out(tmp_path: Path) -> None:
    path = tmp_path / "seq.csv"
    write_csv(path, ["a", "b"], [[1, 2]])
    with pytest.raises(
        TableError, match=r"\[-1, 2\] has a variable axis.*send such rows to a server"
    ):
        labelled_rows(path, None, [-1, 2])


def test_missing_file_and_column(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="No such file"):
        read_csv(tmp_path / "nope.csv")
    path = tmp_path / "t.csv"
    write_csv(path, ["a", "b"], [[1, 2]])
    with pytest.raises(TableError, match="no column 'y'"):
        labelled_rows(path, "y", [1])


def test_feature_rows_leave_out_a_label_column_if_present(tmp_path: Path) -> None:
    labelled, plain = tmp_path / "l.csv", tmp_path / "p.csv"
    write_csv(labelled, ["a", "y", "b"], [[1, 9, 2]])
    write_csv(plain, ["a", "b"], [[1, 2]])
    assert feature_rows(labelled, [2], ignore="y").tolist() == [[1.0, 2.0]]
    assert feature_rows(plain, [2], ignore="y").tolist() == [[1.0, 2.0]]
