"""Prediction rows given in memory, as a data source takes them: CSV rows (a list of dicts,
or a mapping of column name -> cells), texts (one string each), image paths. They go
through the run's fitted transforms, exactly as a file given to `read_input` would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tdsl import spec as S
from tdsl.data import images, table, text
from tdsl.data.base import Context, DataError, Problems
from tdsl.data.csvfile import CsvTable, find_columns
from tdsl.data.fitted import Fitted
from tdsl.data.labels import float_dtype

ROWS = Path("<rows>")  # where problems with in-memory rows say they are


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""  # a missing cell, as an empty CSV cell is
    return str(value)


def as_table(rows: Any) -> CsvTable:
    """A CSV table of in-memory rows: a list of dicts (one per row) or a mapping of column
    name -> cells (a DataFrame-like dict of lists or arrays)."""
    if isinstance(rows, Mapping):
        header = tuple(str(k) for k in rows)
        columns = [list(v) if not isinstance(v, str) else [v] for v in rows.values()]
        lengths = {len(c) for c in columns}
        if len(lengths) > 1:
            raise DataError.at((), f"the columns of the rows have different lengths {lengths}")
        cells = [[_cell(c[i]) for c in columns] for i in range(lengths.pop() if lengths else 0)]
    elif isinstance(rows, Sequence) and all(isinstance(r, Mapping) for r in rows):
        header = tuple(dict.fromkeys(str(k) for r in rows for k in r))
        cells = [[_cell(r.get(name)) for name in header] for r in rows]
    else:
        raise DataError.at((), "CSV rows are a list of dicts or a mapping of column name -> cells")
    columns = [[row[at] for row in cells] for at in range(len(header))]
    return CsvTable(RowColumns(columns, len(cells)), header)


class RowColumns:
    """In-memory rows' columns as `CsvTable` reads a file's: every cell as text, so each
    goes through the checks a CSV cell would, and problems name the row."""

    path = ROWS

    def __init__(self, columns: list[list[str]], num_rows: int):
        self.columns, self.num_rows = columns, num_rows

    def floats(self, at: int, missing: frozenset[str]) -> None:
        return None  # read cell by cell, with the CSV source's own parsing and messages

    def text(self, at: int) -> list[str]:
        return list(self.columns[at])

    def codes(self, at: int) -> tuple[np.ndarray, list[str]]:
        distinct = list(dict.fromkeys(self.columns[at]))  # in order of first use, as Arrow's
        index = {cell: i for i, cell in enumerate(distinct)}
        return np.array([index[c] for c in self.columns[at]], dtype=np.int64), distinct

    def where(self, row: int) -> str:
        return f"row {row + 1} of {ROWS}"

    def forget(self, at: int) -> None:
        """Nothing to let go of: the rows are the caller's."""

    def release(self) -> None:
        """Nothing to let go of: the rows are the caller's."""


def features_from_rows(
    source: S.DataSource, ctx: Context, fitted: Fitted | None, rows: Any
) -> tuple[torch.Tensor, ...] | None:
    """The model's inputs for raw in-memory rows of `source`'s kind; None when the source
    has no raw row format (its rows are arrays already)."""
    if isinstance(source, S.Table) and _table_rows(rows):
        states = table._check_fitted(source, fitted)
        source = table.expand(source, ctx)
        found = as_table(rows)
        problems = Problems()
        find_columns(found, [((), c.name) for c in source.columns], problems)
        problems.check()
        features = table.transform(source, states, found, problems)
        problems.check()
        return (torch.from_numpy(features).to(float_dtype(ctx)),)
    if isinstance(source, S.Text) and _strings(rows):
        vocab = fitted.expect("text", "vocab")
        return (text.encode(source, vocab, list(rows), text._id_dtype(ctx)),)
    if isinstance(source, S.ImageFolder | S.Segmentation) and _strings(rows, paths=True):
        files = [Path(p) for p in rows]
        reader = images.ImageReader(source, files, torch.zeros(len(files)), float_dtype(ctx))
        return reader.read(np.arange(len(files))).features
    return None


def _table_rows(rows: Any) -> bool:
    if isinstance(rows, Mapping):
        return True
    return isinstance(rows, Sequence) and bool(rows) and isinstance(rows[0], Mapping)


def _strings(rows: Any, paths: bool = False) -> bool:
    kinds = (str, Path) if paths else (str,)
    return (
        isinstance(rows, Sequence)
        and not isinstance(rows, str)
        and all(isinstance(r, kinds) for r in rows)
    )
