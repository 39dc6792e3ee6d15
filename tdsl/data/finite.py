"""NaN and infinities in data, found while loading: the first one's row and column, and how
many there are. A non-finite input makes the loss non-finite, which would otherwise be
reported at some training step as if the learning rate were to blame."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tdsl.data.base import Problems
from tdsl.errors import SpecPath

# Rows of a streamed (.npy folder) array checked while loading: its first batches.
STREAMED_ROWS = 1 << 14
CHUNK_VALUES = 1 << 22


def _floats(values: Any) -> np.ndarray | None:
    if isinstance(values, torch.Tensor):
        if not (values.is_floating_point() or values.is_complex()):
            return None
        values = values.detach().cpu()
        return (values.float() if values.dtype == torch.bfloat16 else values).numpy()
    array = np.asarray(values) if not isinstance(values, np.ndarray) else values
    return array if array.dtype.kind in "fc" else None


def first_nonfinite(values: Any) -> tuple[int, tuple[int, ...], str, int, int] | None:
    """(row, position within the row, "NaN" or "inf"/"-inf", non-finite values, rows holding
    one) of an array or tensor of floats; None when every value is finite (or no floats).
    Read in chunks of rows: the mask of a large array is never made whole."""
    array = _floats(values)
    if array is None or array.ndim == 0 or not array.size:
        return None
    per_row = max(1, array.size // len(array))
    step = max(1, CHUNK_VALUES // per_row)
    first = None
    count = rows = 0
    for start in range(0, len(array), step):
        finite = np.isfinite(np.asarray(array[start : start + step]).reshape(-1, per_row))
        if finite.all():  # the common case: nothing more to do
            continue
        bad_rows = ~finite.all(axis=1)
        count += int((~finite).sum())
        rows += int(bad_rows.sum())
        if first is None:
            row = int(np.flatnonzero(bad_rows)[0])
            flat = int(np.flatnonzero(~finite[row])[0])
            first = (start + row, flat)
    if first is None:
        return None
    row, flat = first
    shape = array.shape[1:]
    position = tuple(int(i) for i in np.unravel_index(flat, shape)) if shape else ()
    value = np.asarray(array[row]).reshape(-1)[flat]
    what = "NaN" if np.isnan(value) else ("inf" if value.real > 0 else "-inf")
    return row, position, what, count, rows


def check_finite(
    values: Any, label: str, path: SpecPath, problems: Problems, first_rows: int | None = None
) -> bool:
    """Add a problem at `path` when `values` (named `label`, e.g. "array 'x' in data.npz")
    holds NaN or an infinity; `first_rows`: only that many leading rows are checked (a
    streamed file). Returns whether all checked values are finite."""
    checked = values if first_rows is None else values[:first_rows]
    found = first_nonfinite(checked)
    if found is None:
        return True
    row, position, what, count, rows = found
    column = ""
    if len(position) == 1:
        column = f", column {position[0]}"
    elif position:
        column = f", position {list(position)} within the row"
    scope = f" of its first {len(checked)}" if first_rows is not None else ""
    problems.add(
        path,
        f"{label} has {what} at row {row}{column} ({_count(count, 'non-finite value')} in "
        f"{_count(rows, 'row')}{scope}); training on it would make the loss NaN",
        "remove or fill those values in the data",
    )
    return False


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
