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
