"""`tdsl predict --input big.parquet`: a Parquet input too large for memory is predicted a
row group at a time, each group's predictions appended to the output before the next group
is read, so memory holds one group, not the file. The output is written to a temporary file
beside it and renamed at the end, as a whole output is: a reader never sees half of it.
The rows are the whole reading's (.npy, the raw outputs, bit for bit; a probability may
round its last float32 bit otherwise, as torch's sigmoid of a group does); .npy is filled in
place, its row count known from the footers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tdsl.data import DataError, read_input_groups
from tdsl.runs.decode import decode
from tdsl.runs.directories import RunError
from tdsl.runs.inference import LoadedModel, Predictions, checked_features
from tdsl.train.atomic_files import atomic_file


def predicted_groups(
    model: LoadedModel, path: Path, threshold: float
) -> tuple[int, Iterator[Predictions]] | None:
    """(rows, each row group's predictions) when `path` is streamed; None: read it whole."""
    try:
        found = read_input_groups(model.spec, model.fitted, path)
    except DataError as exc:
        raise RunError(f"cannot use input {path}: {exc.problems[0].message}") from None
    if found is None:
        return None
    rows, groups = found
    if not rows:
        raise RunError(f"{path} holds no rows to predict")

    def predictions() -> Iterator[Predictions]:
        try:
            for features in groups:
                outputs = model.outputs(checked_features(model.spec, features, str(path)))
                yield Predictions(decode(model.decoders, outputs, threshold), outputs)
        except DataError as exc:
            raise RunError(f"cannot use input {path}: {exc.problems[0].message}") from None

    return rows, predictions()


def write_streamed(
    output_path: Path, kind: str, rows: int, groups: Iterator[Predictions], to_bytes, raw
) -> int:
    """Each group's predictions appended to `output_path` in `kind` (`to_bytes`: a group's
    columns as a whole file's bytes; `raw`: its outputs as one array); returns the rows."""
    with atomic_file(Path(output_path)) as temporary:
        return _write(temporary, kind, rows, groups, to_bytes, raw)


def _write(temporary: Path, kind: str, rows: int, groups, to_bytes, raw) -> int:
    written = 0
    if kind == "npy":
        array: Any = None
        for group in groups:
            values = raw(group.outputs)
            if array is None:
                shape = (rows, *values.shape[1:])
                array = np.lib.format.open_memmap(temporary, "w+", values.dtype, shape)
            array[written : written + len(values)] = values
            written += len(values)
        if array is not None:
            array.flush()
        return written
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer = None
        try:
            for group in groups:
                table = pa.table(
                    {n: v.astype(str) if v.dtype == object else v for n, v in group.columns.items()}
                )
                writer = writer or pq.ParquetWriter(temporary, table.schema)
                writer.write_table(table)
                written += len(group)
        finally:
            if writer is not None:
                writer.close()
        return written
    with temporary.open("wb") as out:
        for group in groups:
            data = to_bytes(group.columns, kind)
            if written and kind == "csv":  # the header once, at the top
                data = data[data.index(b"\n") + 1 :]
            out.write(data)
            written += len(group)
    return written
