"""Fitting a table's column transforms on the training rows: standardization statistics,
min/max, fill values and one-hot categories, kept as JSON state."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from tdsl import spec as S
from tdsl.data.csvfile import CsvTable


def fit_column(
    column: S.Column, categories: list[str] | None, values: np.ndarray | None
) -> dict[str, Any]:
    state = common_state(column, categories)
    if column.transform in ("onehot", "missing"):
        return state
    assert values is not None
    gaps = np.isnan(values)
    state["fill"] = None
    if column.fill == "value":
        state["fill"] = float(column.fill_value)
    elif column.fill in ("mean", "median"):
        present = values[~gaps]  # a copy: only for the fills that need it
        if len(present):
            state["fill"] = float(present.mean() if column.fill == "mean" else np.median(present))
        del present
    # Without gaps the values are the filled values: no copy of a whole column.
    filled = values
    if gaps.any():
        filled = np.where(gaps, state["fill"] if state["fill"] is not None else 0.0, values)
    del gaps

    def moments() -> tuple[float, float]:
        return float(filled.mean()), float(filled.std())

    def bounds() -> tuple[float, float]:
        return float(filled.min()), float(filled.max())

    return scaled_state(state, len(filled), moments, bounds)


def common_state(column: S.Column, categories: Iterable[str] | None) -> dict[str, Any]:
    """A column's state before its numbers: all of it for one-hot and missing columns."""
    state: dict[str, Any] = {"name": column.name, "transform": column.transform}
    state["indicator"] = column.indicator or column.transform == "missing"
    if column.transform == "onehot":
        state["categories"] = sorted(categories or (), key=_category_order)
        state["unknown"] = column.unknown
    return state


def scaled_state(
    state: dict[str, Any],
    count: int,
    moments: Callable[[], tuple[float, float]],
    bounds: Callable[[], tuple[float, float]],
) -> dict[str, Any]:
    """`state` with its transform's statistics of the filled column: (mean, std) from
    `moments` to standardize, (min, max) from `bounds` for min-max. No training rows (an
    empty training split, reported as such) give the identity, so that the other splits
    can still be checked."""
    if state["transform"] == "standardize":
        mean, std = moments() if count else (0.0, 1.0)
        state["mean"], state["std"] = mean, std or 1.0
    if state["transform"] == "minmax":
        low, high = bounds() if count else (0.0, 1.0)
        state["min"], state["range"] = low, (high - low) or 1.0
    return state


def planned_names(column: S.Column, categories: list[str] | None) -> list[str]:
    """The feature names the column will have once fitted (they do not depend on the
    numbers fitted): a column's width, before its numbers are read."""
    return output_names(fit_column(column, categories, np.zeros(0)))


def categories_of(table: CsvTable, name: str, missing: frozenset[str]) -> list[str]:
    """The distinct stripped texts of the column's present cells."""
    codes, uniques = table.codes(name)
    # A count per distinct text: one pass, where np.unique would sort the codes.
    used = np.flatnonzero(np.bincount(codes, minlength=len(uniques))) if len(codes) else []
    return sorted({uniques[i].strip() for i in used} - missing)


def _category_order(text: str) -> tuple:
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def output_names(state: dict[str, Any]) -> list[str]:
    name, transform = state["name"], state["transform"]
    names = []
    if transform == "onehot":
        names = [f"{name}={c}" for c in state["categories"]]
        names += [f"{name}=<unknown>"] if state["unknown"] else []
    elif transform != "missing":
        names = [name]
    return names + ([f"{name}:missing"] if state["indicator"] else [])
