"""Time series: sliding windows over numeric CSV columns, rows in time order.

A window is `window` consecutive rows of `columns` ([window, len(columns)] per sample); its
target is the `targets` row `horizon` steps after the window's last row. With `difference`,
each row is first replaced by its change from the row before (the seeds' daily increments of
cumulative counts). Splits are chronological — the first windows train, the later ones
validate — so no window is trained on after the windows it is scored against.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tdsl import spec as S
from tdsl.data import csvfile
from tdsl.data.base import Context, DataSignature, FeatureInfo, Problems, check_exists
from tdsl.data.csvfile import CsvTable
from tdsl.data.labels import float_dtype
from tdsl.data.tensors import Splits, TensorData, ordered_split, split_rows


def static_problems(source: S.TimeSeries, problems: Problems) -> None:
    for key in ("columns", "targets"):
        names = getattr(source, key)
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            problems.add((key,), f"{', '.join(map(repr, twice))} listed twice")
    if source.split.stratify:
        problems.add(
            ("split", "stratify"),
            "time-series splits are chronological; stratify applies to class targets",
        )


def _targets(source: S.TimeSeries) -> tuple[str, ...]:
    return source.targets or source.columns


def _matrix(table: CsvTable, names, key: str, problems: Problems) -> np.ndarray:
    columns = []
    for index, name in enumerate(names):
        values = csvfile.numbers(table, name, (key, index), frozenset({""}), problems)
        gap = csvfile.first_missing(values)
        if gap is not None and not problems.items:
            problems.add((key, index), f"column {name!r} has no value on {table.where(gap)}")
        columns.append(values)
    return np.stack(columns, axis=1) if columns else np.zeros((len(table), 0))


def _read(source: S.TimeSeries, path: Path, problems: Problems, with_targets: bool):
    # Training data needs rows; a series to predict from is checked against the window.
    table = csvfile.read_csv(path, source.delimiter, ("file",), need_rows=with_targets)
    wanted = [(("columns", i), n) for i, n in enumerate(source.columns)]
    if with_targets:
        wanted += [(("targets", i), n) for i, n in enumerate(source.targets)]
    csvfile.find_columns(table, wanted, problems)
    problems.check()
    x = _matrix(table, source.columns, "columns", problems)
    y = _matrix(table, _targets(source), "targets", problems) if with_targets else None
    problems.check()
    if source.difference:
        x = np.diff(x, axis=0)
        y = None if y is None else np.diff(y, axis=0)
    return x, y, len(table)


def _windows(x: np.ndarray, window: int, starts: np.ndarray) -> np.ndarray:
    view = np.lib.stride_tricks.sliding_window_view(x, window, axis=0)  # [T-w+1, C, w]
    return np.ascontiguousarray(view[starts].transpose(0, 2, 1))


def prepare(source: S.TimeSeries, ctx: Context, _fitted: object = None):
    problems = Problems()
    static_problems(source, problems)
    path = ctx.path(source.file)
    found = check_exists(path, ("file",))
    if found:
        problems.items.append(found)
    problems.check()
    x, y, lines = _read(source, path, problems, with_targets=True)
    span = source.window + source.horizon
    if len(x) < span:
        after = " after differencing" if source.difference else ""
        problems.add(
            ("window",),
            f"{path} has {lines} rows ({len(x)}{after}); a window of {source.window} "
            f"and a horizon of {source.horizon} need {span}",
        )
    problems.check()
    starts = np.arange(0, len(x) - span + 1, source.stride)
    dtype = float_dtype(ctx)
    features = torch.from_numpy(_windows(x, source.window, starts)).to(dtype)
    target = torch.from_numpy(y[starts + span - 1]).float()
    rows = TensorData((features,), target)
    train, val, test = split_rows(rows, ordered_split(len(rows), source.split))
    counts = {
        k: len(s) for k, s in (("train", train), ("val", val), ("test", test)) if s is not None
    }
    feature = FeatureInfo((source.window, len(source.columns)), str(dtype).removeprefix("torch."))
    target_spec = S.Target(kind="regression", shape=(len(_targets(source)),))
    return Splits(train, val, test), DataSignature((feature,), target_spec, counts)


def read_input(source: S.TimeSeries, ctx: Context, _fitted: object, path: Path):
    """Every window (at the spec's stride) of a CSV with the input columns; each window's
    output predicts the row `horizon` steps after it."""
    problems = Problems()
    x, _, lines = _read(source, path, problems, with_targets=False)
    if len(x) < source.window:
        problems.add(("window",), f"{path} has {lines} rows, fewer than a window")
    problems.check()
    starts = np.arange(0, len(x) - source.window + 1, source.stride)
    return (torch.from_numpy(_windows(x, source.window, starts)).to(float_dtype(ctx)),)
