"""Opening a table source's file: a CSV through `csvfile`, Parquet through `parquet`, with
the options of the source (layout, missing markers, the columns it reads)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tdsl import spec as S
from tdsl.data import csvfile
from tdsl.data.base import Problems
from tdsl.data.csvfile import CsvTable, Layout


def layout(source: S.Table) -> Layout:
    return Layout(source.skip_rows, source.header, source.names)


def _text_columns(source: S.Table) -> set[str]:
    if source.columns == "all":
        return set()
    return {c.name for c in source.columns if c.transform == "onehot"}


def _number_columns(source: S.Table) -> set[str]:
    """Columns read as float64 from the start; Arrow would keep every cell of a column whose
    type it infers until the end of the file."""
    numeric = ("passthrough", "standardize", "minmax")
    found = (
        set()
        if source.columns == "all"
        else {c.name for c in source.columns if c.transform in numeric}
    )
    if source.targets:
        return found | {t.column for t in source.targets.values() if t.kind != "class"}
    return found | ({source.target} if source.target_kind in ("binary", "regression") else set())


def read_table(
    source: S.Table,
    path: Path,
    where: tuple,
    need_rows: bool = True,
    wanted: Sequence[tuple[tuple, str]] | None = (),
) -> CsvTable:
    """The `wanted` ((spec path, name)) columns of a CSV or Parquet file; for Parquet, a
    missing column is reported from the schema, before any row is read."""
    names = None if wanted is None else {name for _, name in wanted}
    if source.kind == "parquet":

        def check(header: tuple[str, ...]) -> None:
            problems = Problems()
            stand_in = csvfile.CsvTable.header_only(path, header)
            csvfile.find_columns(stand_in, wanted or (), problems)
            problems.check()

        from tdsl.data import parquet  # pyarrow: only when a Parquet table is read

        return parquet.read_parquet(path, where, need_rows, names, before_reading=check)
    return csvfile.read_csv(
        path,
        source.delimiter,
        where,
        need_rows=need_rows,
        layout=layout(source),
        missing=frozenset(source.missing),
        text=_text_columns(source),
        wanted=names,
        numbers=_number_columns(source),
    )
