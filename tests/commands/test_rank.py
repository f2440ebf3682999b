"""``mcdrop rank``: pools in chunks, the picks file, the server path, exit codes."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from app.cli import main
from app.engine.ranking import TopK
from app.registry.loading import load_model_folder
from tests.engine.ranking_support import scored_rows
from tests.support import BUNDLED_MODELS, serve_in_thread

POOL = load_digits().data[:120].astype(np.float32)


def write_pool(path: Path, rows: np.ndarray = POOL, header: bool = True) -> Path:
    names = ",".join(f"p{i}" for i in range(rows.shape[1]))
    np.savetxt(path, rows, delimiter=",", fmt="%g", header=names if header else "", comments="")
    return path


def read_picks(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def rank(tmp_path: Path, *args: str, name: str = "picks.csv") -> tuple[int, list[dict[str, str]]]:
    out = tmp_path / name
    pool = tmp_path / "pool.csv"
    if not pool.exists():
        write_pool(pool)
    code = main(["rank", "digits-cnn", "--data", str(pool), "--out", str(out), "--quiet",
                 "--n-samples", "20", "--seed", "4", *args])  # fmt: skip
    return code, read_picks(out) if code == 0 else []


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with serve_in_thread() as url:
        yield url


def _engine_picks(strategy: str, k: int, chunk_rows: int) -> tuple[list[str], list[float]]:
    """The picks of the engine's TopK over the pool in ``chunk_rows`` chunks: what the command
    must write. (How far chunking itself may move scores is tests/engine/test_ranking.py's.)"""
    model = load_model_folder(BUNDLED_MODELS / "digits-cnn")
    top = TopK.for_strategy(strategy, k)  # type: ignore[arg-type]
    inputs = torch.from_numpy(POOL).reshape(-1, 1, 8, 8)
    for start in range(0, len(POOL), chunk_rows):
        chunk = inputs[start : start + chunk_rows]
        top.add(start, scored_rows(model, chunk, strategy, 20, 4))  # type: ignore[arg-type]
    positions, scores = top.picks(seed=4)
    return [str(int(top.indices[i])) for i in positions], scores


@pytest.mark.parametrize("strategy", ["bald", "batchbald", "least_confidence"])
@pytest.mark.parametrize("chunk_rows", [17, 1000])
def test_a_chunked_pool_gives_the_engines_picks(
    tmp_path: Path, strategy: str, chunk_rows: int
) -> None:
    code, picks = rank(tmp_path, "--k", "6", "--strategy", strategy,
                       "--chunk-rows", str(chunk_rows))  # fmt: skip
    assert code == 0 and len(picks) == 6
    indices, scores = _engine_picks(strategy, 6, chunk_rows)
    assert [row["index"] for row in picks] == indices
    assert [float(row["score"]) for row in picks] == scores


def test_picks_file_holds_index_score_and_the_rows_values(tmp_path: Path) -> None:
    code, picks = rank(tmp_path, "--k", "4", "--strategy", "entropy", "--chunk-rows", "50")
    assert code == 0
    scores = [float(row["score"]) for row in picks]
    assert scores == sorted(scores, reverse=True)
    for row in picks:
        values = [float(row[f"p{i}"]) for i in range(64)]
        assert values == POOL[int(row["index"])].tolist()


def test_the_server_path_picks_the_same_rows(tmp_path: Path, server_url: str) -> None:
    for strategy in ("bald", "batchbald"):
        # The same chunks on both sides: only the transport differs, so the same bits.
        code, local = rank(tmp_path, "--k", "5", "--strategy", strategy, "--chunk-rows", "40",
                           name=f"l{strategy}")  # fmt: skip
        assert code == 0
        code, remote = rank(tmp_path, "--k", "5", "--strategy", strategy, "--url", server_url,
                            "--chunk-rows", "40", name=f"r{strategy}")  # fmt: skip
        assert code == 0
        assert [row["index"] for row in remote] == [row["index"] for row in local]
        assert [float(r["score"]) for r in remote] == [float(r["score"]) for r in local]


def test_parquet_pool_gives_the_csv_picks(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({f"p{i}": POOL[:, i] for i in range(64)})
    pq.write_table(table, tmp_path / "pool.parquet", row_group_size=30)
    out = tmp_path / "pq.csv"
    code = main(["rank", "digits-cnn", "--data", str(tmp_path / "pool.parquet"), "--out",
                 str(out), "--quiet", "--n-samples", "20", "--seed", "4", "--k", "5",
                 "--chunk-rows", "25"])  # fmt: skip
    assert code == 0
    _, from_csv = rank(tmp_path, "--k", "5", "--chunk-rows", "25")
    assert [row["index"] for row in read_picks(out)] == [row["index"] for row in from_csv]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--k", "0"], 2, "--k must be at least 1"),
        (["--k", "3", "--strategy", "std"], 2, "does not apply to a classification model"),
        (["--k", "3", "--url", "http://x", "--ray"], 2, "exclusive"),
        (["--k", "5", "--strategy", "batchbald", "--candidates", "2"], 2, "--candidates"),
        (["--k", "3", "--url", "http://127.0.0.1:9"], 1, "cannot reach"),
    ],
)
def test_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: int, message: str
) -> None:
    assert rank(tmp_path, *args)[0] == code
    assert message in capsys.readouterr().err


def test_unreadable_pools_are_problems_not_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pool.csv").write_text("p0,p1\n1,2\n")
    assert rank(tmp_path, "--k", "1")[0] == 1
    assert "the model takes 64" in capsys.readouterr().err
    (tmp_path / "pool.csv").write_text("1,2\nx,y\n")
    assert rank(tmp_path, "--k", "1")[0] == 1
    assert "pool.csv:2: not a row of numbers" in capsys.readouterr().err
    code = main(["rank", "digits-cnn", "--data", str(tmp_path / "none.csv"), "--k", "1",
                 "--out", str(tmp_path / "o.csv")])  # fmt: skip
    assert code == 1 and "no such file" in capsys.readouterr().err
