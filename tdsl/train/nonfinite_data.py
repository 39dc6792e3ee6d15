"""When a loss turns NaN, whether the data did it: a sentence for the stop message naming
where the rows in memory hold NaN or an infinity, and the error for a validation loss made
non-finite by the data (skipping training batches must not hide it behind `val_loss=nan`
every epoch)."""

from __future__ import annotations

import math
from typing import Any

from tdsl.data import TensorData
from tdsl.data.finite import first_nonfinite


def data_note(data: Any, split: str) -> str:
    """ " The training data holds NaN at row 3 of input 0, ..." or "" (data not in memory, or
    finite). Rows are counted within the split, as the batches saw them."""
    if not isinstance(data, TensorData):
        return ""
    arrays = [(f"input {i}", f) for i, f in enumerate(data.features)] + [("target", data.target)]
    for label, values in arrays:
        found = first_nonfinite(values.cpu())
        if found is not None:
            row, position, what, count, rows = found
            at = f", position {list(position)}" if position else ""
            return (
                f" The {split} data holds {what} ({label}, row {row} of the split{at}; {count} "
                f"non-finite values in {rows} rows): the data, not the learning rate, is the "
                "cause; `tdsl validate` names the file and row"
            )
    return ""


def nonfinite_validation(epoch: int, logs: dict[str, float], val: Any) -> str | None:
    """The message for a validation loss after `epoch` (1-based) made non-finite by NaN or
    infinite validation data; None otherwise (a diverging model may overflow on validation
    rows: with on_nan: skip_batch that run goes on, as its history shows)."""
    value = logs.get("val_loss")
    if value is None or math.isfinite(value):
        return None
    note = data_note(val, "validation")
    if not note:
        return None
    return f"the validation loss became {value} in epoch {epoch}.{note}"
