"""`tdsl predict --output FILE`: decoded predictions written in the format FILE's extension
names — CSV and Parquet with a header, JSON lines (one object per row), or .npy holding the
model's raw outputs — with `--keep` columns of the input CSV passed through in front.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tdsl import spec as S
from tdsl.data import DataError
from tdsl.data.column_inference import layout
from tdsl.data.csvfile import Layout, read_csv
from tdsl.runs.directories import RunError
from tdsl.runs.inference import Predictions, load_model
from tdsl.train.atomic_files import atomic_write_bytes
from tdsl.wording import did_you_mean

PREDICTION_FORMATS = (".csv", ".jsonl", ".json", ".npy", ".parquet")


def prediction_format(path: Path) -> str:
    """The format `path`'s extension names: csv, json (JSON lines, for .jsonl and .json),
    npy or parquet. Raises RunError for any other extension, or for .parquet without
    pyarrow, so a caller can refuse before computing anything."""
    suffix = Path(path).suffix.lower()
    choices = ", ".join(PREDICTION_FORMATS)
    if suffix not in PREDICTION_FORMATS:
        what = f"unknown format {suffix!r}" if suffix else "no extension to choose a format"
        raise RunError(f"{path}: {what}; use {choices}")
    if suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        raise RunError(f"{path}: writing .parquet needs the pyarrow package (pip install pyarrow)")
    return "json" if suffix == ".jsonl" else suffix[1:]


def raw_outputs(outputs: Any) -> np.ndarray:
    """The model's outputs as one array: several outputs flattened side by side."""
    if isinstance(outputs, torch.Tensor):
        return outputs.numpy()
    return torch.cat([o.reshape(len(o), -1) for o in outputs], dim=1).numpy()


def _text(value: Any) -> str:
    # A float32 prints as the shortest decimal that reads back as the same float32.
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, np.floating):
        return float(str(value)) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def table_bytes(columns: dict[str, np.ndarray], kind: str) -> bytes:
    """Named columns (one value per row each) as a CSV with a header, JSON lines, or
    Parquet."""
    names = list(columns)
    count = len(next(iter(columns.values()))) if columns else 0
    if kind == "csv":
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(names)
        for i in range(count):
            writer.writerow([_text(columns[n][i]) for n in names])
        return text.getvalue().encode()
    if kind == "json":
        lines = [
            json.dumps({n: _json_value(columns[n][i]) for n in names}, allow_nan=False)
            for i in range(count)
        ]
        return "".join(line + "\n" for line in lines).encode()
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({n: v.astype(str) if v.dtype == object else v for n, v in columns.items()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def kept_columns(
    spec: S.Spec, input_path: Path, keep: Sequence[str], rows: int
) -> dict[str, np.ndarray]:
    """The `keep` columns of the input CSV, checked to line up with the predictions."""
    if not keep:
        return {}
    if input_path.suffix.lower() != ".csv" or isinstance(spec.data, S.TimeSeries):
        raise RunError(
            f"--keep passes columns of a CSV input through; {input_path} is not a CSV "
            "with one prediction per row"
        )
    source = spec.data if isinstance(spec.data, S.Table) else None
    delimiter = source.delimiter if source is not None else ","
    try:
        table = read_csv(
            input_path,
            delimiter,
            (),
            need_rows=False,
            layout=layout(source) if source is not None else Layout(),
        )
    except DataError as exc:
        raise RunError(f"cannot use input {input_path}: {exc.problems[0].message}") from None
    for name in keep:
        if name not in table.header:
            hint = did_you_mean(name, table.header)
            raise RunError(
                f"--keep {name}: no column {name!r} in {input_path}" + (f"; {hint}" if hint else "")
            )
    if len(table) != rows:
        raise RunError(f"--keep: {input_path} has {len(table)} rows, the model made {rows}")
    return {name: np.array(table.column(name), dtype=object) for name in keep}


def predict_file(
    directory: Path,
    input_path: Path,
    output_path: Path,
    which: str = "best",
    allow_imports: Sequence[str] = (),
    keep: Sequence[str] = (),
    threshold: float = 0.5,
) -> int:
    """Write the decoded predictions for the rows in `input_path` to exactly `output_path`
    (atomically, creating missing folders); returns the row count."""
    kind = prediction_format(output_path)
    if keep and kind == "npy":
        raise RunError(
            f"{output_path}: .npy holds the raw outputs only; --keep needs csv, jsonl or parquet"
        )
    model = load_model(directory, which, allow_imports)
    from tdsl.runs.prediction_stream import predicted_groups, write_streamed

    streamed = predicted_groups(model, Path(input_path), threshold)
    if streamed is not None:  # a Parquet input larger than memory: a row group at a time
        if keep:
            kept_columns(model.spec, Path(input_path), keep, streamed[0])  # says why not
        return write_streamed(Path(output_path), kind, *streamed, table_bytes, raw_outputs)
    predictions: Predictions = model.predict(Path(input_path), threshold)
    if kind == "npy":
        buffer = io.BytesIO()
        np.save(buffer, raw_outputs(predictions.outputs), allow_pickle=False)
        data = buffer.getvalue()
    else:
        kept = kept_columns(model.spec, Path(input_path), keep, len(predictions))
        clash = [name for name in kept if name in predictions.columns]
        if clash:
            raise RunError(f"--keep {clash[0]}: the predictions have a column of that name")
        data = table_bytes({**kept, **predictions.columns}, kind)
    output_path = Path(output_path)
    atomic_write_bytes(output_path, data)  # with the mode a plain open() would give
    return len(predictions)
