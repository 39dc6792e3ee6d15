"""The row groups of a Parquet file or folder, numbered across its files, and reading some
of them as one table: what streaming a Parquet source larger than memory reads at a time.

The catalog comes from the footers alone (no row is read). A cell is located by its row in
its file and its row group there, so a problem found while streaming says where it is.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tdsl.data.base import DataError
from tdsl.data.csvfile import CsvTable
from tdsl.data.memory import refuse_unless_fits
from tdsl.data.parquet import ParquetColumns, _read_rows, memory_need, parquet_files, schema_names
from tdsl.data.parquet_types import read_types
from tdsl.errors import SpecPath


@attrs.frozen(eq=False)
class RowGroups:
    """Every row group of a file or folder, in file (name) order then group order."""

    path: Path
    files: tuple[Path, ...]
    header: tuple[str, ...]
    file_of: np.ndarray  # per group: its file's index in `files`
    group_of: np.ndarray  # per group: its number in its file
    counts: np.ndarray  # per group: its rows
    starts: np.ndarray  # per group: its first row among all the rows (the last: the total)
    schemas: tuple[pa.Schema, ...]  # per file: its columns' types
    where: SpecPath  # the spec's key for the file or folder

    @classmethod
    def of(cls, path: Path, where: SpecPath) -> RowGroups:
        files = parquet_files(path, where)
        header, _, schemas = schema_names(files, where)
        file_of, group_of, counts = [], [], []
        for at, file in enumerate(files):
            meta = pq.ParquetFile(file).metadata
            for group in range(meta.num_row_groups):
                file_of.append(at)
                group_of.append(group)
                counts.append(meta.row_group(group).num_rows)
        counts_array = np.array(counts, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts_array)]).astype(np.int64)
        return cls(
            path,
            tuple(files),
            header,
            np.array(file_of, dtype=np.int64),
            np.array(group_of, dtype=np.int64),
            counts_array,
            starts,
            tuple(schemas),
            tuple(where),
        )

    @property
    def num_rows(self) -> int:
        return int(self.starts[-1])

    def __len__(self) -> int:
        return len(self.counts)

    def name(self, group: int) -> str:
        return f"row group {int(self.group_of[group])} of {self.files[self.file_of[group]]}"

    def refuse_too_large(self, columns: int, free: int | None, where: SpecPath) -> None:
        """Row groups are read whole: one that alone would not fit is refused, with figures."""
        if free is None or not len(self):
            return
        largest = int(np.argmax(self.counts))
        refuse_unless_fits(
            where,
            f"{self.name(largest)} ({int(self.counts[largest]):,} rows of {columns} columns)",
            memory_need(int(self.counts[largest]), columns),
            free,
            "write the file with smaller row groups "
            "(pyarrow.parquet.write_table(..., row_group_size=ROWS)), or free memory",
        )

    def read(self, groups: Sequence[int], columns: list[str]) -> CsvTable:
        """The `columns` of these row groups, one table in the order given."""
        types = read_types(self.files, self.schemas, columns, self.where)
        raw = GroupColumns(self, list(groups))
        try:
            _read_rows(raw, self.header, types, raw.pieces(), _opened)
        except (OSError, pa.ArrowException) as exc:
            names = ", ".join(self.name(g) for g in groups)
            raise DataError.at((), f"cannot read {names}: {exc}") from None
        return CsvTable(raw, self.header)  # type: ignore[arg-type]


def _opened(path: Path) -> pq.ParquetFile:
    """The file opened once per process: opening parses its footer, which lists every row
    group (27 ms for 500 groups of 18 columns), and a streamed epoch reads every group."""
    return _open(path, os.getpid(), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _open(path: Path, _process: int, _changed: int) -> pq.ParquetFile:
    return pq.ParquetFile(path)


class GroupColumns(ParquetColumns):
    """Some row groups' columns; a row is located by its file, row and row group."""

    def __init__(self, catalog: RowGroups, groups: list[int]):
        counts = [int(catalog.counts[g]) for g in groups]
        super().__init__(catalog.path, list(catalog.files), counts)
        self.num_rows = sum(counts)
        self.catalog, self.groups = catalog, groups
        self.firsts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def pieces(self) -> list[tuple[Path, int]]:
        c = self.catalog
        return [(c.files[c.file_of[g]], int(c.group_of[g])) for g in self.groups]

    def where(self, row: int) -> str:
        at = int(np.searchsorted(self.firsts, row, side="right")) - 1
        c, group = self.catalog, self.groups[at]
        file = int(c.file_of[group])
        in_file = row - int(self.firsts[at]) + int(c.starts[group] - c.starts[_first(c, file)])
        return f"row {in_file + 1} of {c.files[file]} (row group {int(c.group_of[group])})"


def _first(catalog: RowGroups, file: int) -> int:
    """The first group of the file."""
    return int(np.flatnonzero(catalog.file_of == file)[0])
