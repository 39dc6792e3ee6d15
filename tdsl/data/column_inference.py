"""`columns: all`: the feature columns of a CSV file, each given a transform by its cells.

A column whose every present cell is a number goes through the source's `default_transform`
(with `fill: median` and a missing indicator where cells are missing); any other column is
one-hot, with an `unknown` column for missing cells and categories the training rows lack.
The choice is made from the main file once and written into the spec (`expand`), so a run's
spec.yaml lists the columns it trained on and stays reproducible as the files change.
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from tdsl import spec as S
from tdsl.data.base import Context, DataError, Problems, check_exists, context
from tdsl.data.csvfile import CsvTable
from tdsl.data.table_files import layout, read_table  # noqa: F401 (layout: re-exported)
from tdsl.wording import did_you_mean


def is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def column_kind(cells: list[str], missing: frozenset[str]) -> str:
    """`number` when every present cell is a number (and one is present), else `text`."""
    present = [c.strip() for c in cells if c.strip() not in missing]
    return "number" if present and all(is_number(c) for c in present) else "text"


def _table_kind(table: CsvTable, name: str, missing: frozenset[str]) -> tuple[str, bool]:
    """The column's kind and whether it has missing cells, from Arrow's numbers when it read
    them, else from its distinct texts (not from a Python string per cell)."""
    values = table.floats(name, missing)
    if values is not None:
        gaps = np.isnan(values)
        return ("number" if not gaps.all() else "text"), bool(gaps.any())
    _, uniques = table.codes(name)
    return column_kind(uniques, missing), any(u.strip() in missing for u in uniques)


def infer_column(name: str, kind: str, gaps: bool, numbers: str) -> S.Column:
    if kind == "number":
        if gaps:
            return S.Column(name=name, transform=numbers, fill="median", indicator=True)
        return S.Column(name=name, transform=numbers)
    return S.Column(name=name, transform="onehot", unknown=True)


def infer_columns(
    source: S.Table,
    table: CsvTable,
    problems: Problems,
    kinds: dict[str, tuple[str, bool]] | None = None,
) -> tuple[S.Column, ...]:
    """The columns of `table` but the target and the excluded ones, each inferred (from
    `kinds`, (kind, has gaps) by name, when given: a streamed source's findings)."""
    for index, name in enumerate(source.exclude):
        if name not in table.header:
            hint = did_you_mean(name, table.header)
            problems.add(("exclude", index), f"no column {name!r} in {table.path}", hint)
    missing = frozenset(source.missing)
    return tuple(
        infer_column(
            name,
            *(kinds[name] if kinds is not None else _table_kind(table, name, missing)),
            source.default_transform,
        )
        for name in table.header
        if name not in left_out(source)
    )


def left_out(source: S.Table) -> set[str]:
    """The columns `columns: all` does not take: the targets and `exclude`."""
    return {source.target, *(t.column for t in source.targets.values()), *source.exclude}


def expand(source: S.Table, ctx: Context) -> S.Table:
    """`source` with `columns: all` written out as the columns it stands for; raises
    `DataError` when the main file cannot be read or `exclude` names no column."""
    if source.columns != "all":
        return source
    path = ctx.path(source.file)
    if source.kind == "parquet":
        from tdsl.data.parquet import check_parquet_path  # pyarrow: only for Parquet

        found = check_parquet_path(path, ("file",))
    else:
        found = check_exists(path, ("file",))
    if found:
        raise DataError([found])
    problems = Problems()
    if source.kind == "parquet" and _streams(source, ctx):  # larger than memory
        from tdsl.data.parquet_infer import infer_streamed

        columns = infer_streamed(source, ctx, problems)
    else:
        table = read_table(source, path, ("file",), wanted=_taken(source, path))
        columns = infer_columns(source, table, problems)
    if not columns:
        problems.add(("columns",), f"no columns left in {path} besides the target and exclude")
    problems.check()
    return attrs.evolve(source, columns=columns, exclude=())


def _taken(source: S.Table, path) -> list[tuple[tuple, str]] | None:
    """The columns to read (None: all): of a Parquet source, those not left out, whose
    types across a folder's files then need not agree (an id column, say)."""
    if source.kind != "parquet":
        return None  # a CSV's header is only known as it is read
    from tdsl.data.parquet import parquet_files, schema_names  # pyarrow: only for Parquet

    header = schema_names(parquet_files(path, ("file",)), ("file",))[0]
    return [(("file",), name) for name in header if name not in left_out(source)]


def _streams(source: S.Table, ctx: Context) -> bool:
    from tdsl.data.parquet_stream import should_stream  # pyarrow: only for Parquet

    return should_stream(source, ctx)


def expand_spec(spec: S.Spec) -> S.Spec:
    """The spec with a CSV source's `columns: all` written out (unchanged when the file
    cannot be read: validation then says why, located)."""
    if not isinstance(spec.data, S.Table) or spec.data.columns != "all":
        return spec
    try:
        return attrs.evolve(spec, data=expand(spec.data, context(spec)))
    except DataError:
        return spec
