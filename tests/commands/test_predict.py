"""``mcdrop predict``: rows from inline JSON, JSON and CSV files, in batches, as a table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sklearn.datasets import load_digits

from app.cli import main
from tests.support import serve_in_thread

DIGITS = load_digits()
IMAGES = DIGITS.images[:5]


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with serve_in_thread() as url:
        yield url


def _predict(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str]:
    code = main(["predict", *args, "--url", url])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _json_answer(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> Any:
    code, out, err = _predict(capsys, url, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_table_for_one_inline_row(server_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    row = json.dumps(IMAGES[0].reshape(-1).tolist())
    code, out, _ = _predict(
        capsys, server_url, "digits-mlp", "--input", row, "--n-samples", "50", "--seed", "3"
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "digits-mlp v1 (classification): 50 MC passes, seed 3, 95% intervals"
    assert lines[2].split()[:3] == ["row", "class", "confidence"]
    cells = lines[4].split()
    assert cells[:2] == ["0", str(DIGITS.target[0])]
    answer = _json_answer(
        capsys, server_url, "digits-mlp", "--input", row, "--n-samples", "50", "--seed", "3"
    )
    first = answer["predictions"][0]
    assert float(cells[2]) == pytest.approx(first["confidence"], rel=1e-3)
    assert float(cells[-2]) == pytest.approx(first["mutual_information"], rel=1e-3)


def test_csv_file_is_reshaped_and_batched_without_changing_numbers(
    server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_file = tmp_path / "digits.csv"
    header = ",".join(f"p{i}" for i in range(64))
    csv_file.write_text(
        header + "\n" + "\n".join(",".join(map(str, i.reshape(-1))) for i in IMAGES)
    )
    json_file = tmp_path / "digits.json"
    json_file.write_text(json.dumps({"inputs": [[image.tolist()] for image in IMAGES]}))
    common = ["digits-cnn", "--n-samples", "20", "--seed", "1"]
    batched = _json_answer(
        capsys, server_url, *common, "--input", str(csv_file), "--batch-size", "2"
    )
    json_batched = _json_answer(
        capsys, server_url, *common, "--input", str(json_file), "--batch-size", "2"
    )
    whole = _json_answer(capsys, server_url, *common, "--input", str(json_file))
    assert batched["seed"] == whole["seed"] == 1
    # The same rows in the same requests: the CSV rows reshaped to the JSON images, bit for bit.
    assert batched["predictions"] == json_batched["predictions"]
    # Same seed, same passes, other request sizes: only float rounding may differ. The prefix's
    # batch size moves a float32 probability by up to ~1e-5 relative (7.6e-6 measured for
    # digits-cnn, tests/engine/test_ranking.py), its mutual information by the bound of
    # tests/engine/error_bounds.bald_bound (under 1e-5 there): 10x margins.
    for left, right in zip(batched["predictions"], whole["predictions"], strict=True):
        assert left["predicted_class"] == right["predicted_class"]
        assert left["mean"] == pytest.approx(right["mean"], rel=1e-4, abs=1e-12)
        assert left["mutual_information"] == pytest.approx(right["mutual_information"], abs=1e-4)
    classes = [row["predicted_class"] for row in whole["predictions"]]
    assert classes == DIGITS.target[:5].tolist()


def test_regression_table(server_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _predict(
        capsys, server_url, "diabetes-mlp", "--input", json.dumps([[0.0] * 10]), "--seed", "0"
    )
    assert code == 0
    assert out.splitlines()[2].split()[:4] == ["row", "output", "mean", "std"]
    assert len(out.splitlines()) == 5


@pytest.mark.parametrize(
    ("model", "value", "status", "error"),
    [
        ("digits-mlp", "[[1, 2", 2, "neither a file nor valid JSON"),
        ("digits-mlp", "{}", 2, "non-empty list of rows"),
        ("digits-mlp", "[[1, 2]]", 1, "422: inputs[0]: has shape [2], expected [64]"),
        ("nope", "[[1]]", 1, "404: model 'nope' not found"),
    ],
)
def test_errors_exit_2_for_unusable_input_1_for_server_errors(
    server_url: str,
    capsys: pytest.CaptureFixture[str],
    model: str,
    value: str,
    status: int,
    error: str,
) -> None:
    code, _, err = _predict(capsys, server_url, model, "--input", value)
    assert code == status and error in err
