"""Parquet tables (`kind: parquet`): a file, or a folder of `.parquet` files, read as the
columns of a CSV source.

The files' schemas and row counts come from their footers, so missing columns (with a
did-you-mean) and columns of the wrong type are reported without reading a row. The rows
are then read column by column, only the columns the spec names; nulls (and NaN in float
columns) are missing cells. A cell is located by its row in its file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tdsl.data.arrow_text import codes_of, compact
from tdsl.data.base import DataError, Problem
from tdsl.data.csvfile import CsvTable
from tdsl.data.memory import available_memory, refuse_unless_fits
from tdsl.data.parquet_types import read_types
from tdsl.errors import SpecPath


def parquet_files(path: Path, where: SpecPath) -> list[Path]:
    """The file, or the folder's `.parquet` files in name order."""
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix == ".parquet" and p.is_file())
        if not found:
            raise DataError.at(where, f"no .parquet files in the folder {path}")
        return found
    return [path]


def check_parquet_path(path: Path, where: SpecPath) -> Problem | None:
    if path.is_file() or path.is_dir():
        return None
    return Problem(tuple(where), f"no such file or folder: {path}")


class ParquetColumns:
    """The columns of one or more Parquet files, as `CsvTable` reads them: number columns
    as float64 numpy arrays (NaN where missing), the others as Arrow arrays."""

    def __init__(self, path: Path, files: list[Path], counts: list[int]):
        self.path, self.files, self.counts = path, files, counts
        self.num_rows = sum(counts)
        self.arrays: dict[int, Any] = {}
        self.unclean: set[int] = set()  # number columns holding an infinity

    def floats(self, at: int, missing: frozenset[str]) -> np.ndarray | None:
        column = self.arrays[at]
        if isinstance(column, np.ndarray):
            return None if at in self.unclean else column
        return _as_floats(column)

    def _text(self, at: int) -> pa.ChunkedArray:
        column = self.arrays[at]
        if isinstance(column, np.ndarray):
            column = pa.chunked_array([pa.array(column, from_pandas=True)])
        if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
            column = pc.cast(column, pa.string())
        return pc.fill_null(column, "")  # a null is an empty (missing) cell

    def text(self, at: int) -> list[str]:
        return self._text(at).to_pylist()

    def codes(self, at: int) -> tuple[np.ndarray, list[str]]:
        return codes_of(self._text(at))

    def where(self, row: int) -> str:
        for file, count in zip(self.files, self.counts, strict=True):
            if row < count:
                return f"row {row + 1} of {file}"
            row -= count
        return f"a row of {self.path}"

    def forget(self, at: int) -> None:
        self.arrays.pop(at, None)

    def release(self) -> None:
        self.arrays = {}


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)


def _pieces(files: Sequence[Path]) -> Iterator[tuple[Path, int]]:
    for file in files:
        for group in range(pq.ParquetFile(file).num_row_groups):
            yield file, group


def _read_rows(
    raw: ParquetColumns,
    header: tuple[str, ...],
    types: dict[str, pa.DataType],
    pieces: Iterable[tuple[Path, int]] | None = None,
    opener: Callable[[Path], pq.ParquetFile] = pq.ParquetFile,
) -> None:
    """Batch by batch: number columns copied into float64 arrays of the known row count,
    the batch then let go of; so memory is the numbers, not Arrow's copy beside them.
    `types`: the columns to read and their types across the files (`read_types`);
    `pieces`: the (file, row group)s to read, in order (default: all of `raw.files`');
    `opener` opens a file (a cache of open files, where the same ones are read again)."""
    read = list(types)
    numbers = {n: np.empty(raw.num_rows) for n in read if _is_number(types[n])}
    chunks: dict[str, list] = {n: [] for n in read if n not in numbers}
    row = 0
    handles: dict[Path, pq.ParquetFile] = {}
    # A row group at a time: iter_batches decodes ahead of its reader, up to most of the
    # file at once (2 GB more for a 1 GB file).
    for file, group in _pieces(raw.files) if pieces is None else pieces:
        handle = handles.get(file) or handles.setdefault(file, opener(file))
        batch = handle.read_row_group(group, columns=read)
        count = batch.num_rows
        for name in read:
            column = batch.column(name)
            if name in numbers:
                values = numbers[name][row : row + count]
                floats = pc.cast(column, pa.float64())
                values[...] = floats.to_numpy() if len(floats) else []
                if np.isinf(values).any():
                    raw.unclean.add(header.index(name))
            else:
                if column.type != types[name]:  # a file's own text type (or nulls)
                    column = pc.cast(column, types[name])
                chunks[name].extend(column.chunks)
        row += count
        del batch
    raw.arrays = {header.index(n): v for n, v in numbers.items()}
    for name in list(chunks):
        raw.arrays[header.index(name)] = compact(chunks.pop(name), types[name])
    pa.default_memory_pool().release_unused()


def _as_floats(column: pa.ChunkedArray) -> np.ndarray | None:
    """float64, NaN for nulls and NaN; None for text columns and infinities."""
    kind = column.type
    if pa.types.is_null(kind):
        return np.full(len(column), math.nan)
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
        return None
    out = np.empty(len(column), dtype=np.float64)
    at = 0
    for chunk in column.chunks:
        out[at : at + len(chunk)] = chunk.to_numpy(zero_copy_only=False)
        at += len(chunk)
    return None if np.isinf(out).any() else out


def schema_names(
    files: Sequence[Path], where: SpecPath
) -> tuple[tuple[str, ...], list[int], list[pa.Schema]]:
    """The column names (of the first file; the others must have the same), each file's
    row count and each file's schema, from the footers alone."""
    names: tuple[str, ...] | None = None
    counts, schemas = [], []
    for file in files:
        try:
            meta = pq.ParquetFile(file).metadata
        except (OSError, pa.ArrowException) as exc:
            raise DataError.at(where, f"{file} is not a readable Parquet file: {exc}") from None
        schemas.append(meta.schema.to_arrow_schema())
        own = tuple(schemas[-1].names)
        if names is not None and own != names:
            raise DataError.at(
                where, f"{file} has the columns {list(own)}, {files[0]} has {list(names)}"
            )
        names = own
        counts.append(meta.num_rows)
    return names or (), counts, schemas


def memory_need(rows: int, columns: int) -> int:
    """Bytes reading `rows` rows of `columns` columns and making their features takes: a
    float64 number and a feature per cell."""
    return rows * max(columns, 1) * 16


def read_parquet(
    path: Path,
    where: SpecPath,
    need_rows: bool = True,
    wanted: Collection[str] | None = None,
    before_reading: Callable[[tuple[str, ...]], None] | None = None,
) -> CsvTable:
    """The file's (or folder's) `wanted` columns (`before_reading` sees the header first);
    raises `DataError` for an unreadable file,
    a folder whose files disagree, no rows (with `need_rows`), or too little memory."""
    files = parquet_files(path, where)
    names, counts, schemas = schema_names(files, where)
    if before_reading is not None:  # column checks, from the footers alone
        before_reading(names)
    read = [n for n in names if wanted is None or n in wanted]
    types = read_types(files, schemas, read, where)
    rows = sum(counts)
    if need_rows and rows == 0:
        raise DataError.at(where, f"{path} has no rows")
    refuse_unless_fits(
        where,
        f"{path} ({rows:,} rows of {len(read)} columns)",
        memory_need(rows, len(read)),
        available_memory(),
        "free memory, read fewer columns, or stream the rows by row groups (stream: auto)",
    )
    header = tuple(names)
    raw = ParquetColumns(path, files, counts)
    try:
        _read_rows(raw, header, types)
    except (OSError, pa.ArrowException) as exc:
        raise DataError.at(where, f"cannot read {path}: {exc}") from None
    return CsvTable(raw, header)  # type: ignore[arg-type]
