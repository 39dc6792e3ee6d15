"""CSV tables: feature columns through per-column transforms, and a target column.

Transforms are fitted on the training rows only — standardization statistics, min/max,
fill values, one-hot categories — and kept as JSON, so validation, evaluation and
prediction rows are transformed with the training rows' numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import attrs
import numpy as np
import torch

from tdsl import spec as S
from tdsl.data import csvfile
from tdsl.data.base import Context, DataError, DataSignature, FeatureInfo, Problems, check_exists
from tdsl.data.column_inference import expand
from tdsl.data.csvfile import CsvTable
from tdsl.data.fitted import Fitted, mismatch
from tdsl.data.labels import float_dtype
from tdsl.data.table_features import NUMBER_HINT, FeatureWriter, feature_tensors
from tdsl.data.table_files import read_table
from tdsl.data.table_fit import categories_of, fit_column, output_names, planned_names
from tdsl.data.table_targets import read_all_targets, target_columns, target_problems
from tdsl.data.tensors import Splits, TensorData, split_index
from tdsl.spec.frozen import FrozenMap

NUMERIC = ("passthrough", "standardize", "minmax")


def static_problems(source: S.Table, problems: Problems) -> None:
    """What is wrong with the columns whatever the file holds."""
    seen: dict[str, int] = {}
    if source.exclude and source.columns != "all":
        problems.add(("exclude",), "exclude applies to columns: all")
    for index, column in enumerate(() if source.columns == "all" else source.columns):
        where = ("columns", index)
        if column.name in seen:
            problems.add(
                where, f"column {column.name!r} is listed twice (also columns[{seen[column.name]}])"
            )
        seen.setdefault(column.name, index)
        if column.fill is not None and column.transform not in NUMERIC:
            problems.add(
                (*where, "fill"), f"fill applies to number columns, not to {column.transform}"
            )
        if column.unknown and column.transform != "onehot":
            problems.add((*where, "unknown"), "unknown applies to onehot columns")
    if source.kind == "parquet":
        for key in ("delimiter", "skip_rows", "header", "names"):
            if getattr(source, key) != getattr(S.Table.__attrs_attrs__, key).default:
                problems.add((key,), f"{key} applies to csv files, not to parquet")
    if source.num_classes is not None and source.target_kind != "class":
        problems.add(("num_classes",), "num_classes applies to class targets")
    target_problems(source, problems)
    for name, column, _, _, where in target_columns(source):
        if column in seen:
            what = "the target" if name is None else f"target {name!r}'s column"
            problems.add(where, f"{what} {column!r} is also a feature column")


def transform(
    source: S.Table, states: Sequence[dict], table: CsvTable, problems: Problems
) -> np.ndarray:
    """The feature matrix as float64."""
    missing = frozenset(source.missing)
    (features,) = feature_tensors(states, [table], missing, problems, torch.float64)
    return features.numpy()


def _check_fitted(source: S.Table, fitted: Fitted) -> list[dict]:
    states = fitted.expect(source.kind, "columns")
    ours = [(c.name, c.transform) for c in source.columns]
    theirs = [(s.get("name"), s.get("transform")) for s in states]
    if ours != theirs:
        raise mismatch(f"columns {theirs} were fitted, the spec has {ours}")
    return states


def _wanted(source: S.Table) -> set[str]:
    """The columns a source reads: the others are not parsed at all."""
    return {c.name for c in source.columns} | {col for _, col, _, _, _ in target_columns(source)}


def _read(source: S.Table, ctx: Context, problems: Problems) -> dict[str, CsvTable]:
    files = {"file": source.file, "val_file": source.val_file, "test_file": source.test_file}
    paths = {k: ctx.path(v) for k, v in files.items() if v is not None}
    for key, path in paths.items():
        if source.kind == "parquet":
            from tdsl.data import parquet  # pyarrow: only for Parquet sources

            found = parquet.check_parquet_path(path, (key,))
        else:
            found = check_exists(path, (key,))
        if found:
            problems.items.append(found)
    problems.check()
    wanted = [(("columns", i), c.name) for i, c in enumerate(source.columns)]
    wanted += [(where, column) for _, column, _, _, where in target_columns(source)]
    tables = {}
    for key, path in paths.items():
        try:
            tables[key] = read_table(source, path, (key,), wanted=wanted)
        except DataError as exc:
            problems.extend(exc)
    problems.check()
    for table in tables.values():
        csvfile.find_columns(table, wanted, problems)
    problems.check()
    return tables


def _check_cells(source: S.Table, tables: dict[str, CsvTable], problems: Problems) -> None:
    """Every cell of every number column in every file is a number, or missing and filled."""
    missing = frozenset(source.missing)
    for index, column in enumerate(source.columns):
        if column.transform not in NUMERIC:
            continue
        for table in tables.values():
            where = ("columns", index)
            csvfile.numbers(table, column.name, where, missing, problems, NUMBER_HINT)
            gaps = np.flatnonzero(table.absent(column.name, missing))
            if len(gaps) and column.fill is None:
                problems.add(
                    where,
                    f"column {column.name!r} has {len(gaps)} missing cells "
                    f"(the first on {table.where(int(gaps[0]))})",
                    "set fill: value, mean or median",
                )


def _fit_and_write(
    source: S.Table, parts: list[CsvTable], problems: Problems, dtype: torch.dtype
) -> tuple[list[dict], list[torch.Tensor]]:
    """Each column fitted on the training rows (`parts[0]`) and at once written into every
    part's features. A number column's rows are gathered for each part once, for fitting
    and transforming both, and the column let go of before fitting makes its temporaries.
    Once a column cannot be fitted, the rest are only fitted (their problems said) and
    nothing is written."""
    missing = frozenset(source.missing)
    categories = {
        c.name: categories_of(parts[0], c.name, missing)
        for c in source.columns
        if c.transform == "onehot"
    }
    width = sum(len(planned_names(c, categories.get(c.name))) for c in source.columns)
    writer = FeatureWriter(parts, width, dtype)
    states = []
    for i, column in enumerate(source.columns):
        values = gathered = None
        if column.transform in NUMERIC:
            where = ("columns", i)
            gathered = [
                csvfile.numbers(part, column.name, where, missing, problems, NUMBER_HINT)
                for part in parts
            ]
            for part in parts:
                part.forget(column.name)
            values = gathered[0]
            if column.fill in ("mean", "median") and np.isnan(values).all():
                problems.add(
                    ("columns", i, "fill"),
                    f"column {column.name!r} has no numbers in the training rows "
                    f"to take the {column.fill} of",
                )
        states.append(fit_column(column, categories.get(column.name), values))
        if not problems.items:
            writer.write(states[-1], missing, ("columns", i), problems, given=gathered)
        del values, gathered
    problems.check()
    return states, writer.finish()


def prepare(
    source: S.Table, ctx: Context, fitted: Fitted | None = None
) -> tuple[Splits, DataSignature]:
    problems = Problems()
    static_problems(source, problems)
    problems.check()
    source = expand(source, ctx)
    if source.kind == "parquet":
        from tdsl.data import parquet_stream  # pyarrow: only for Parquet sources

        if parquet_stream.should_stream(source, ctx):
            return parquet_stream.prepare(source, ctx, fitted)
    tables = _read(source, ctx, problems)
    targets, target_spec, classes, named = read_all_targets(source, tables, fitted, problems)
    for _, column, _, _, _ in target_columns(source):
        for table in tables.values():
            table.forget(column)  # a tensor now: the column's cells are not needed again
    _check_cells(source, tables, problems)
    problems.check()
    main = tables["file"]
    strata = targets["file"].reshape(len(main), -1)[:, 0].long() if source.split.stratify else None
    own = (source.val_file is not None, source.test_file is not None)
    index = split_index(
        len(main), source.split, torch.Generator().manual_seed(ctx.seed), strata, own
    )
    dtype = float_dtype(ctx)
    # The main file's rows go straight to their splits (no whole matrix to copy from).
    parts = {"train": main.subset(index.train.numpy())}
    for which, name in ((index.val, "val"), (index.test, "test")):
        if which is not None:
            parts[name] = main.subset(which.numpy())
    for key in ("val_file", "test_file"):
        if key in tables:
            parts[key] = tables[key]
    missing = frozenset(source.missing)
    if fitted is None:
        states, made = _fit_and_write(source, list(parts.values()), problems, dtype)
        fitted = Fitted(
            source.kind,
            {
                "columns": states,
                "features": [n for s in states for n in output_names(s)],
                "classes": classes,
            },
        )
    else:
        states = _check_fitted(source, fitted)
        made = feature_tensors(states, list(parts.values()), missing, problems, dtype)
    features = dict(zip(parts, made, strict=True))
    for table in tables.values():
        table.release()  # its columns are features now
    problems.check()
    splits = [TensorData((features["train"],), targets["file"][index.train])]
    for which, name, key in ((index.val, "val", "val_file"), (index.test, "test", "test_file")):
        if key in tables:
            splits.append(TensorData((features[key],), targets[key]))
        else:
            splits.append(
                None if which is None else TensorData((features[name],), targets["file"][which])
            )
    width = features["train"].shape[1]
    counts = {
        name: len(s)
        for name, s in zip(("train", "val", "test"), splits, strict=True)
        if s is not None
    }
    signature = DataSignature(
        (FeatureInfo((width,), str(dtype).removeprefix("torch.")),), target_spec, counts
    )
    if named is not None:
        signature = attrs.evolve(signature, targets=FrozenMap(named))
    return Splits(*splits, fitted=fitted), signature


def read_input(
    source: S.Table, ctx: Context, fitted: Fitted, path: Path
) -> tuple[torch.Tensor, ...]:
    """Prediction rows from a CSV with the feature columns (the target column may be absent),
    transformed with the fitted transforms."""
    states = _check_fitted(source, fitted)
    problems = Problems()
    source = expand(source, ctx)
    wanted = [((), c.name) for c in source.columns]
    table = read_table(source, path, (), need_rows=False, wanted=wanted)
    csvfile.find_columns(table, wanted, problems)
    problems.check()
    missing = frozenset(source.missing)
    features = feature_tensors(states, [table], missing, problems, float_dtype(ctx))
    problems.check()
    return (features[0],)
