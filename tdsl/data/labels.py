"""Targets read from text cells (CSV columns, text-file labels), and the feature dtype a
model's input asks for.

Binary targets are 0 or 1; regression targets are numbers; class targets are integer
indices, or any other labels numbered in sorted order over every file of the source (the
label set describes the task, it is not a statistic of the rows).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch

from tdsl import spec as S
from tdsl.data.base import Context, Problems
from tdsl.errors import SpecPath
from tdsl.registry.ops import DTYPES

Cells = tuple[list[str], Callable[[int], str]]  # the cells, and "line N of FILE" for a row


def float_dtype(ctx: Context) -> torch.dtype:
    """The dtype of a single floating model input, else float32."""
    if len(ctx.inputs) == 1 and DTYPES[ctx.inputs[0].dtype].is_floating_point:
        return DTYPES[ctx.inputs[0].dtype]
    return torch.float32


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_targets(
    kind: str,
    num_classes: int | None,
    cells: Mapping[str, Cells],
    missing: frozenset[str],
    classes: list[str] | None,
    problems: Problems,
    where: SpecPath = ("target",),
    fitted: bool = False,
) -> tuple[dict[str, torch.Tensor], S.Target, list[str] | None]:
    """Targets per file key, the target's spec, and the class names (None: integer labels).
    With `fitted`, `classes` are the fitted ones and are not recomputed."""
    stripped = {key: [c.strip() for c in values] for key, (values, _) in cells.items()}
    for key, values in stripped.items():
        gaps = [row for row, cell in enumerate(values) if cell in missing]
        if gaps:
            more = f" ({len(gaps) - 1} more rows like it)" if len(gaps) > 1 else ""
            problems.add(where, f"the target is missing on {cells[key][1](gaps[0])}{more}")
    if problems.items:
        return {}, S.Target(kind=kind, num_classes=num_classes), classes
    if kind == "class":
        return _classes(num_classes, stripped, cells, classes, problems, where, fitted)
    out = {}
    for key, values in stripped.items():
        numbers = [_number(v) for v in values]
        bad = [
            row
            for row, v in enumerate(numbers)
            if v is None or (kind == "binary" and v not in (0.0, 1.0))
        ]
        if bad:
            text = values[bad[0]]
            wanted = "binary targets are 0 or 1" if kind == "binary" else "not a number"
            hint = "use target_kind: class for labels that are names" if kind == "binary" else None
            problems.add(where, f"{cells[key][1](bad[0])} has the target {text!r}; {wanted}", hint)
            continue
        out[key] = torch.tensor(numbers, dtype=torch.float32).reshape(-1, 1)
    return out, S.Target(kind=kind), None


def _integer(text: str) -> int | None:
    value = _number(text)
    return int(value) if value is not None and value == int(value) and value >= 0 else None


def _classes(num_classes, stripped, cells, classes, problems, where, fitted):
    everything = [v for values in stripped.values() for v in values]
    if not fitted:
        as_ints = [_integer(v) for v in everything]
        classes = None if all(v is not None for v in as_ints) else sorted(set(everything))
    numbering = None if classes is None else {name: i for i, name in enumerate(classes)}
    out, largest = {}, -1
    for key, values in stripped.items():
        ids = [(_integer(v) if numbering is None else numbering.get(v)) for v in values]
        unknown = [row for row, i in enumerate(ids) if i is None]
        if unknown:
            problems.add(
                where,
                f"{cells[key][1](unknown[0])} has the label {values[unknown[0]]!r}, "
                "which the fitted classes lack",
            )
            continue
        largest = max([largest, *ids])
        out[key] = torch.tensor(ids, dtype=torch.long)
    found = len(classes) if classes is not None else largest + 1
    if num_classes is not None and found > num_classes:
        problems.add(
            ("num_classes",),
            f"the labels need {found} classes, num_classes is {num_classes}",
        )
    target = S.Target(kind="class", num_classes=num_classes or found)
    return out, target, classes
