"""Fitting a table's column transforms on the training rows: standardization statistics,
min/max, fill values and one-hot categories, kept as JSON state."""

from __future__ import annotations

from typing import Any

import numpy as np

from tdsl import spec as S
from tdsl.data.csvfile import CsvTable


def fit_column(
    column: S.Column, categories: list[str] | None, values: np.ndarray | None
) -> dict[str, Any]:
    state: dict[str, Any] = {"name": column.name, "transform": column.transform}
    state["indicator"] = column.indicator or column.transform == "missing"
    if column.transform == "onehot":
        state["categories"] = sorted(categories or (), key=_category_order)
        state["unknown"] = column.unknown
        return state
    if column.transform == "missing":
        return state
    assert values is not None
    present = values[~np.isnan(values)]
    fill = {
        "value": lambda: column.fill_value,
        "mean": present.mean,
        "median": lambda: np.median(present),
    }
    empty = column.fill in ("mean", "median") and not len(present)
    state["fill"] = None if column.fill is None or empty else float(fill[column.fill]())
    filled = np.where(np.isnan(values), state["fill"] if state["fill"] is not None else 0.0, values)
    # No training rows (an empty training split, reported as such): the identity, so that
    # the other splits can still be checked.
    if column.transform == "standardize":
        state["mean"], state["std"] = 0.0, 1.0
        if len(filled):
            state["mean"], state["std"] = float(filled.mean()), float(filled.std()) or 1.0
    if column.transform == "minmax":
        state["min"], state["range"] = 0.0, 1.0
        if len(filled):
            low, high = float(filled.min()), float(filled.max())
            state["min"], state["range"] = low, (high - low) or 1.0
    return state


def categories_of(table: CsvTable, name: str, missing: frozenset[str]) -> list[str]:
    """The distinct stripped texts of the column's present cells."""
    codes, uniques = table.codes(name)
    used = np.unique(codes) if len(codes) else []
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
