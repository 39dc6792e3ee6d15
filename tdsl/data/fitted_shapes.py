"""What a `transforms.json` must hold for its kind, checked when it is read: a file edited by
hand (or by someone else) is refused with the entry that is wrong, before any transform
trips over it with a Python error."""

from __future__ import annotations

import math
from typing import Any

_NUMERIC = ("passthrough", "standardize", "minmax")
_TRANSFORMS = (*_NUMERIC, "onehot", "missing")


def _number(value: Any, allow_none: bool = False) -> bool:
    if value is None:
        return allow_none
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _class_names(value: Any) -> bool:
    return value is None or _strings(value)


def _column_problem(state: Any) -> str | None:
    if not isinstance(state, dict):
        return "is not a mapping"
    if not isinstance(state.get("name"), str):
        return "has no column name"
    transform = state.get("transform")
    if transform not in _TRANSFORMS:
        return f"has the transform {transform!r}"
    if not isinstance(state.get("indicator"), bool):
        return "indicator is not true or false"
    if transform == "onehot":
        if not _strings(state.get("categories")):
            return "categories are not a list of strings"
        if not isinstance(state.get("unknown"), bool):
            return "unknown is not true or false"
    if transform in _NUMERIC and "fill" not in state:
        return "has no fill"
    if transform in _NUMERIC and not _number(state["fill"], allow_none=True):
        return f"fill is {state.get('fill')!r}, not a number or null"
    wanted = {"standardize": ("mean", "std"), "minmax": ("min", "range")}.get(transform, ())
    for key in wanted:
        if not _number(state.get(key)) or (key in ("std", "range") and state[key] == 0):
            return f"{key} is {state.get(key)!r}, not a non-zero number"
    return None


def _csv_problem(state: dict[str, Any]) -> str | None:
    columns = state.get("columns")
    if not isinstance(columns, list):
        return "columns is not a list"
    for index, column in enumerate(columns):
        problem = _column_problem(column)
        if problem:
            return f"columns[{index}] {problem}"
    classes = state.get("classes")
    named = classes.values() if isinstance(classes, dict) else [classes]
    if not all(_class_names(c) for c in named):
        return "classes is not a list of class names"
    return None


def _images_problem(state: dict[str, Any]) -> str | None:
    return None if _strings(state.get("classes")) else "classes is not a list of folder names"


def _text_problem(state: dict[str, Any]) -> str | None:
    vocab = state.get("vocab")
    if not isinstance(vocab, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        for k, v in vocab.items()
    ):
        return "vocab is not a mapping of tokens to ids"
    return None if _class_names(state.get("classes")) else "classes is not a list of labels"


_CHECKS = {"csv": _csv_problem, "images": _images_problem, "text": _text_problem}


def state_problem(kind: str, state: dict[str, Any]) -> str | None:
    """What is wrong with fitted transforms of `kind`, or None (kinds not listed here are
    checked where they are used)."""
    check = _CHECKS.get(kind)
    return check(state) if check is not None else None
