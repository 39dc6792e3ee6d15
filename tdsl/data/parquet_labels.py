"""The targets and splits of a Parquet source streamed by row groups: its class labels
from every file, its target specs, and each main row's split as one byte.

The splits are the ones the in-memory source draws (`split_index` on the same seed), so a
streamed source trains and evaluates on the same rows as in memory.
"""

from __future__ import annotations

import numpy as np
import torch

from tdsl import spec as S
from tdsl.data.base import Context, Problems
from tdsl.data.fitted import Fitted
from tdsl.data.labels import _integer
from tdsl.data.parquet_groups import RowGroups
from tdsl.data.table_targets import read_all_targets, target_columns
from tdsl.data.tensors import split_index

EVERY_ROW = 255  # the split code of a row in no split (or, for a reader: every row)


def class_labels(
    source: S.Table, catalogs: dict[str, RowGroups], problems: Problems
) -> dict[str | None, tuple[list[str] | None, int]]:
    """Per target name: its class names (None: integer labels) and its number of classes,
    from the distinct labels of every file (the label set describes the task)."""
    missing = frozenset(source.missing)
    found: dict[str | None, tuple[list[str] | None, int]] = {}
    for name, column, kind, num_classes, _ in target_columns(source):
        if kind != "class":
            continue
        texts: set[str] = set()
        for catalog in catalogs.values():
            for group in range(len(catalog)):
                codes, uniques = catalog.read([group], [column]).codes(column)
                used = np.unique(codes) if len(codes) else []
                texts |= {uniques[i].strip() for i in used} - missing
        as_ints = [_integer(t) for t in texts]
        if all(i is not None for i in as_ints):
            found[name] = (None, max(as_ints, default=-1) + 1)
        else:
            found[name] = (sorted(texts), len(texts))
        if num_classes is not None and found[name][1] > num_classes:
            problems.add(
                ("num_classes",),
                f"the labels need {found[name][1]} classes, num_classes is {num_classes}",
            )
    return found


def target_specs(source: S.Table, labels: dict) -> dict[str | None, S.Target]:
    """Each target's spec; a class target's count from `labels` (`class_labels`)."""
    specs = {}
    for name, _, kind, num_classes, _ in target_columns(source):
        if kind == "class":
            specs[name] = S.Target(kind="class", num_classes=num_classes or labels[name][1])
        else:
            specs[name] = S.Target(kind=kind)
    return specs


def _strata(source: S.Table, main: RowGroups, classes: Fitted) -> torch.Tensor:
    """The first target of every main row (class ids), for a stratified split."""
    out = torch.empty(main.num_rows, dtype=torch.long)
    columns = [column for _, column, _, _, _ in target_columns(source)]
    for group in range(len(main)):
        problems = Problems()
        table = main.read([group], columns)
        targets = read_all_targets(source, {"file": table}, classes, problems)[0]
        problems.check()
        start = int(main.starts[group])
        out[start : start + len(table)] = targets["file"].reshape(len(table), -1)[:, 0].long()
    return out


def split_labels(source: S.Table, ctx: Context, main: RowGroups, classes: Fitted) -> np.ndarray:
    """Per main row, its split's code (0 train, 1 val, 2 test, EVERY_ROW none)."""
    strata = _strata(source, main, classes) if source.split.stratify else None
    own = (source.val_file is not None, source.test_file is not None)
    generator = torch.Generator().manual_seed(ctx.seed)
    index = split_index(main.num_rows, source.split, generator, strata, own)
    del strata
    labels = np.full(main.num_rows, EVERY_ROW, dtype=np.uint8)
    for code, which in enumerate((index.train, index.val, index.test)):
        if which is not None:
            labels[which.numpy()] = code
    return labels
