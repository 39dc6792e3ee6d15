"""A Parquet source larger than memory (or with `stream: always`), read by row groups.

Nothing holds the table: a few passes over the row groups, one group at a time, find the
class labels, check every cell, draw the splits and fit the transforms; the splits then
read their rows a window of groups at a time as batches are drawn (`parquet_rows`).

The splits are the ones the in-memory source draws, kept as one byte per row: the row's
split (`parquet_labels`). Drawing them needs the seeded permutation of every row and the
splits' row ids (16 bytes a row, let go of at once), and with `split.stratify` the first
target of each row and its rank (16 more). Fitting reads the training rows of every group
once; a `fill: median` column takes four more passes over its column (`parquet_fit`).
"""

from __future__ import annotations

import attrs
import numpy as np
import torch

from tdsl import spec as S
from tdsl.data import csvfile
from tdsl.data.base import Context, DataError, DataSignature, FeatureInfo, Problems
from tdsl.data.fitted import Fitted
from tdsl.data.labels import float_dtype
from tdsl.data.memory import available_memory
from tdsl.data.parquet import memory_need
from tdsl.data.parquet_fit import Median, NumberStats, column_state, fill_value
from tdsl.data.parquet_groups import RowGroups
from tdsl.data.parquet_labels import EVERY_ROW, class_labels, split_labels, target_specs
from tdsl.data.parquet_rows import GroupReader, StreamedRows
from tdsl.data.table import NUMERIC, _check_fitted
from tdsl.data.table_features import NUMBER_HINT
from tdsl.data.table_fit import categories_of, output_names
from tdsl.data.table_targets import target_columns
from tdsl.data.tensors import Splits
from tdsl.spec.frozen import FrozenMap

WINDOW = 4  # row groups shuffled together, when memory allows
_FILES = ("file", "val_file", "test_file")


def _catalogs(source: S.Table, ctx: Context) -> dict[str, RowGroups]:
    return {
        key: RowGroups.of(ctx.path(getattr(source, key)), (key,))
        for key in _FILES
        if getattr(source, key) is not None
    }


def _columns(source: S.Table) -> tuple[str, ...]:
    names = [c.name for c in source.columns]
    names += [column for _, column, _, _, _ in target_columns(source)]
    return tuple(dict.fromkeys(names))


def should_stream(source: S.Table, ctx: Context) -> bool:
    """`stream: always`, or (`auto`) the files' columns would not fit in memory. False when
    a file cannot be opened: the in-memory reading says why, located."""
    if source.stream != "auto":
        return source.stream == "always"
    try:
        catalogs = _catalogs(source, ctx)
    except (DataError, OSError):
        return False
    rows = sum(c.num_rows for c in catalogs.values())
    free = available_memory()
    every = source.columns == "all"  # all are read to infer their transforms
    columns = len(catalogs["file"].header) if every else len(_columns(source))
    return free is not None and memory_need(rows, columns) > free


def _fit(source, catalogs, labels, classes: Fitted, problems: Problems) -> list[dict]:
    """Every cell and target checked, the transforms fitted on the training rows: one
    pass over every row group (and four over the median columns' training rows)."""
    from tdsl.data.table_targets import read_all_targets

    missing = frozenset(source.missing)
    numbers = [(i, c) for i, c in enumerate(source.columns) if c.transform in NUMERIC]
    stats = {c.name: NumberStats() for _, c in numbers}
    categories = {c.name: set() for c in source.columns if c.transform == "onehot"}
    gaps: dict[int, list] = {}
    columns = list(_columns(source))
    for key, catalog in catalogs.items():
        for group in range(len(catalog)):
            table = catalog.read([group], columns)
            read_all_targets(source, {"file": table}, classes, problems)
            for i, column in numbers:
                csvfile.numbers(table, column.name, ("columns", i), missing, problems, NUMBER_HINT)
                absent = np.flatnonzero(table.absent(column.name, missing))
                if len(absent) and column.fill is None:
                    seen = gaps.setdefault(i, [0, table.where(int(absent[0]))])
                    seen[0] += len(absent)
            problems.check()  # the first group with a bad cell is enough to say
            if key != "file":
                continue
            start = int(catalog.starts[group])
            train = table.subset(np.flatnonzero(labels[start : start + len(table)] == 0))
            for i, column in numbers:
                values = csvfile.numbers(train, column.name, ("columns", i), missing, problems)
                stats[column.name].add(values)
            for name, found in categories.items():
                found |= set(categories_of(train, name, missing))
    for i, (count, first) in sorted(gaps.items()):
        problems.add(
            ("columns", i),
            f"column {source.columns[i].name!r} has {count} missing cells (the first on {first})",
            "set fill: value, mean or median",
        )
    for i, column in numbers:
        if column.fill in ("mean", "median") and not stats[column.name].count:
            problems.add(
                ("columns", i, "fill"),
                f"column {column.name!r} has no numbers in the training rows "
                f"to take the {column.fill} of",
            )
    problems.check()
    medians = {c.name: Median(stats[c.name].count) for _, c in numbers if c.fill == "median"}
    _find_medians(catalogs["file"], labels, medians, missing)
    return [
        column_state(
            column,
            categories.get(column.name),
            stats.get(column.name),
            fill_value(column, stats[column.name], medians.get(column.name))
            if column.name in stats
            else None,
        )
        for column in source.columns
    ]


def _find_medians(main: RowGroups, labels, medians: dict[str, Median], missing) -> None:
    if not medians:
        return
    for _ in range(Median.passes):
        for group in range(len(main)):
            table = main.read([group], list(medians))
            start = int(main.starts[group])
            train = table.subset(np.flatnonzero(labels[start : start + len(table)] == 0))
            for name, median in medians.items():
                median.add(csvfile.numbers(train, name, (), missing, Problems()))
        for median in medians.values():
            median.advance()


def _window(catalogs: dict[str, RowGroups], columns: int, workers: int) -> int:
    """Row groups per window: up to `WINDOW`, as many as the windows in flight (one per
    worker, read ahead twice, and the one being batched) leave room for."""
    free = available_memory()
    largest = max((int(c.counts.max()) for c in catalogs.values() if len(c)), default=0)
    if free is None or not largest:
        return WINDOW
    in_flight = 2 * workers + 1
    return int(max(1, min(WINDOW, free // (in_flight * memory_need(largest, columns)))))


def prepare(
    source: S.Table, ctx: Context, fitted: Fitted | None = None
) -> tuple[Splits, DataSignature]:
    """The source's splits streamed from its row groups, and its signature."""
    problems = Problems()
    catalogs = _catalogs(source, ctx)
    columns = _columns(source)
    for key, catalog in catalogs.items():
        stand_in = csvfile.CsvTable.header_only(catalog.path, catalog.header)
        csvfile.find_columns(stand_in, [((key,), name) for name in columns], problems)
    problems.check()
    free = available_memory()
    for key, catalog in catalogs.items():
        catalog.refuse_too_large(len(columns), free, (key,))
    labels_found = class_labels(source, catalogs, problems)
    problems.check()
    named = [name for name, *_ in target_columns(source)]
    classes = {name: labels_found.get(name, (None, 0))[0] for name in named}
    if fitted is not None:
        known = fitted.state.get("classes")
        classes = known if source.targets else {None: known}
    for name, known_classes in classes.items():  # fitted names: their count, as in memory
        if known_classes is not None:
            labels_found[name] = (known_classes, len(known_classes))
    kept = classes if source.targets else classes[None]
    with_classes = Fitted(source.kind, {"classes": kept})
    main = catalogs["file"]
    if main.num_rows == 0:
        raise DataError.at(("file",), f"{main.path} has no rows")
    labels = split_labels(source, ctx, main, with_classes)
    if fitted is None:
        states = _fit(source, catalogs, labels, with_classes, problems)
        fitted = Fitted(
            source.kind,
            {
                "columns": states,
                "features": [n for s in states for n in output_names(s)],
                "classes": kept,
            },
        )
    _check_fitted(source, fitted)
    dtype = float_dtype(ctx)
    window = _window(catalogs, len(columns), source.workers)
    reading = (source, fitted, dtype, columns, window)
    splits = [_split(main, labels, 0, *reading)]
    for code, key in ((1, "val_file"), (2, "test_file")):
        if key in catalogs:  # a split of its own file: every row
            splits.append(_split(catalogs[key], None, EVERY_ROW, *reading))
        else:
            splits.append(_split(main, labels, code, *reading))
    width = len(fitted.state["features"])
    specs = target_specs(source, labels_found)
    counts = {
        name: len(s)
        for name, s in zip(("train", "val", "test"), splits, strict=True)
        if s is not None
    }
    signature = DataSignature(
        (FeatureInfo((width,), str(dtype).removeprefix("torch.")),), specs[named[0]], counts
    )
    if source.targets:
        signature = attrs.evolve(signature, targets=FrozenMap(specs))
    return Splits(*splits, fitted=fitted), signature


def _split(
    catalog: RowGroups,
    labels: np.ndarray | None,
    code: int,
    source: S.Table,
    fitted: Fitted,
    dtype: torch.dtype,
    columns: tuple[str, ...],
    window: int,
) -> StreamedRows | None:
    """The split's rows (`code` in `labels`; every row without them); None: no rows."""
    reader = GroupReader(catalog, labels, code, source, fitted, dtype, columns)
    if labels is None:
        per_group = catalog.counts
    else:
        per_group = np.array(
            [
                np.count_nonzero(labels[catalog.starts[g] : catalog.starts[g + 1]] == code)
                for g in range(len(catalog))
            ],
            dtype=np.int64,
        )
    count = int(per_group.sum())
    if not count:
        return None
    return StreamedRows(reader, np.flatnonzero(per_group), count, window, source.workers)
