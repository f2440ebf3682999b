"""Reading an unlabelled pool in chunks and writing the picks (``mcdrop rank``).

A pool is a CSV file (one flattened row per line, an optional header line) or a Parquet file
(every column a feature; needs the optional ``pyarrow``). Rows are read ``chunk_rows`` at a
time, so memory does not grow with the pool.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import numpy.typing as npt

Rows = npt.NDArray[np.float32]


class PoolError(ValueError):
    """The pool file cannot be read as rows of numbers."""


@dataclass(frozen=True)
class Chunk:
    """``rows`` (B, F) float32 of the pool, the first of which has pool index ``offset``."""

    offset: int
    rows: Rows


class Pool:
    """A pool file: its header (column names, if any), row count where known, and chunks."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise PoolError(f"{path}: no such file")
        self.path = path
        self.parquet = path.suffix.lower() in (".parquet", ".pq")
        self.header: list[str] | None = None
        self.total: int | None = None
        if self.parquet:
            table = _parquet_file(path)
            self.header = list(table.schema_arrow.names)
            self.total = int(table.metadata.num_rows)
        else:
            with path.open(newline="") as handle:
                first = next(csv.reader(handle), None)
            if first is None:
                raise PoolError(f"{path}: empty file")
            if not _numeric(first):
                self.header = first

    def chunks(self, chunk_rows: int) -> Iterator[Chunk]:
        """The pool, ``chunk_rows`` rows at a time, in file order."""
        if self.parquet:
            yield from self._parquet_chunks(chunk_rows)
            return
        with self.path.open(newline="") as handle:
            yield from self._csv_chunks(handle, chunk_rows)

    def _csv_chunks(self, handle: TextIO, chunk_rows: int) -> Iterator[Chunk]:
        reader = csv.reader(handle)
        if self.header is not None:
            next(reader)
        offset, buffer = 0, []
        for line_number, line in enumerate(reader, start=2 if self.header else 1):
            if not line:
                continue
            try:
                buffer.append([float(cell) for cell in line])
            except ValueError:
                raise PoolError(f"{self.path}:{line_number}: not a row of numbers") from None
            if len(buffer) == chunk_rows:
                yield Chunk(offset, _array(buffer, self.path))
                offset, buffer = offset + len(buffer), []
        if buffer:
            yield Chunk(offset, _array(buffer, self.path))

    def _parquet_chunks(self, chunk_rows: int) -> Iterator[Chunk]:
        offset = 0
        for batch in _parquet_file(self.path).iter_batches(batch_size=chunk_rows):
            columns = [column.to_numpy(zero_copy_only=False) for column in batch.columns]
            rows = np.stack(columns, axis=1).astype(np.float32)
            yield Chunk(offset, rows)
            offset += len(rows)


def _parquet_file(path: Path):  # type: ignore[no-untyped-def]
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise PoolError(
            f"{path}: reading Parquet needs pyarrow (pip install 'mcdrop[parquet]')"
        ) from None
    return pq.ParquetFile(path)


def _numeric(cells: Sequence[str]) -> bool:
    try:
        [float(cell) for cell in cells]
    except ValueError:
        return False
    return True


def _array(buffer: list[list[float]], path: Path) -> Rows:
    widths = {len(row) for row in buffer}
    if len(widths) != 1:
        raise PoolError(f"{path}: rows of different lengths {sorted(widths)}")
    return np.asarray(buffer, dtype=np.float32)


def write_picks(
    path: Path, header: list[str] | None, picks: Sequence[tuple[int, float, Rows]]
) -> None:
    """CSV of the picks, best first: ``index`` (0-based pool row), ``score``, then the row."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        if picks:
            width = int(picks[0][2].size)
            names = header if header is not None and len(header) == width else None
            writer.writerow(["index", "score", *(names or [f"x{i}" for i in range(width)])])
        for index, score, row in picks:
            writer.writerow([index, repr(score), *(repr(float(v)) for v in row.reshape(-1))])
