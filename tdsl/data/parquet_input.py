"""Prediction rows of a Parquet file or folder too large for memory (or any, with `stream:
always`), read a row group at a time and transformed with the run's fitted transforms, so
`tdsl predict` writes each group's predictions before it reads the next; the same features
as reading the file whole, as `stream: auto` does for training data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from tdsl import spec as S
from tdsl.data import csvfile
from tdsl.data.base import Context, DataError, Problems
from tdsl.data.column_inference import expand
from tdsl.data.fitted import Fitted, tampered_guard
from tdsl.data.labels import float_dtype
from tdsl.data.memory import available_memory
from tdsl.data.parquet import memory_need
from tdsl.data.parquet_groups import RowGroups
from tdsl.data.table import _check_fitted
from tdsl.data.table_features import feature_tensors


def _streams(source: S.Table, catalog: RowGroups) -> bool:
    if source.stream != "auto":
        return source.stream == "always"
    free = available_memory()
    return free is not None and memory_need(catalog.num_rows, len(source.columns)) > free


def input_groups(
    source: S.Table, ctx: Context, fitted: Fitted, path: Path
) -> tuple[int, Iterator[tuple[torch.Tensor, ...]]] | None:
    """(rows, each row group's features) of a Parquet input to stream; None when it is read
    whole. Missing columns and a row group too large alone are refused here, before any row
    is read; a bad cell as its group is read, located by file, row and row group."""
    source = expand(source, ctx)
    try:
        catalog = RowGroups.of(path, ())
    except (DataError, OSError):
        return None  # the whole reading says why, as before
    if not _streams(source, catalog):
        return None
    states = _check_fitted(source, fitted)
    names = [c.name for c in source.columns]
    problems = Problems()
    stand_in = csvfile.CsvTable.header_only(catalog.path, catalog.header)
    csvfile.find_columns(stand_in, [((), name) for name in names], problems)
    problems.check()
    catalog.refuse_too_large(len(names), available_memory(), ())
    return catalog.num_rows, _groups(catalog, states, names, source, fitted, float_dtype(ctx))


def _groups(catalog, states, names, source, fitted, dtype) -> Iterator[tuple[torch.Tensor, ...]]:
    missing = frozenset(source.missing)
    for group in range(len(catalog)):
        if not catalog.counts[group]:
            continue
        table = catalog.read([group], names)
        problems = Problems()
        with tampered_guard(fitted):
            (features,) = feature_tensors(states, [table], missing, problems, dtype)
        problems.check()
        table.release()
        yield (features,)
