"""A Parquet folder whose files disagree on a column's type: number types of any width and
precision (and a file of only nulls) read as one number column, text types as one text
column, whole or streamed by row groups; a number in one file and text in another is one
located error naming the column, both files and their types, before a row is read."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tdsl
from tdsl.data import parquet
from tdsl.data.base import DataError
from tdsl.data.parquet_groups import RowGroups

SPEC = """\
name: pq
data:
  kind: parquet
  file: d
  stream: {stream}
  columns:
    - {{name: x, transform: standardize}}
    - {{name: c, transform: onehot}}
  target: y
  target_kind: binary
  split: {{train: 0.5, val: 0.5}}
model:
  inputs: [{{shape: [3]}}]
  layers: [{{op: linear, out_features: 1}}]
loss: {{kind: bce_with_logits}}
optimizer: {{kind: adam, lr: 0.01}}
train: {{epochs: 1, batch_size: 4}}
"""

X = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # whole numbers: some files hold integers
C = ["u", "v", "u", "w", "v", "u"]


TEXT = (pa.string(), pa.string())


def _folder(tmp_path, x_types, c_types=TEXT):
    folder = tmp_path / "d"
    folder.mkdir()
    for part, (x_type, c_type) in enumerate(zip(x_types, c_types, strict=True)):
        rows = slice(3 * part, 3 * part + 3)
        x = pa.array(X[rows]).cast(x_type) if x_type != pa.null() else pa.nulls(3)
        c = pa.array(C[rows], c_type) if not pa.types.is_dictionary(c_type) else None
        c = pa.array(C[rows]).dictionary_encode() if c is None else c
        y = pa.array([0, 1, 1], pa.int64())
        pq.write_table(pa.table({"x": x, "c": c, "y": y}), folder / f"p{part}.parquet")
    return folder


def _read(folder, streamed: bool):
    if streamed:
        table = RowGroups.of(folder, ("file",)).read([0, 1], ["x", "c"])
    else:
        table = parquet.read_parquet(folder, ("file",), wanted={"x", "c"})
    x = table.floats("x", frozenset())
    return np.nan_to_num(x, nan=-1.5).tolist(), table.column("c")


UNIFIED = [
    ((pa.int32(), pa.int64()), (pa.string(), pa.string())),
    ((pa.float32(), pa.float64()), (pa.string(), pa.large_string())),
    ((pa.int64(), pa.float64()), (pa.string(), pa.dictionary(pa.int32(), pa.string()))),
    ((pa.null(), pa.int64()), (pa.dictionary(pa.int32(), pa.string()), pa.string())),
]


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize(("x_types", "c_types"), UNIFIED)
def test_types_of_one_kind_are_read_as_one_column(tmp_path, x_types, c_types, streamed):
    folder = _folder(tmp_path, x_types, c_types)
    x, c = _read(folder, streamed)
    expected = [-1.5] * 3 + X[3:] if x_types[0] == pa.null() else X
    assert x == expected and c == C


@pytest.mark.parametrize("stream", ["never", "always"])
@pytest.mark.parametrize("second", [pa.string(), pa.date32()])
def test_a_number_and_text_column_is_one_located_error(tmp_path, stream, second):
    folder = tmp_path / "d"
    folder.mkdir()
    pq.write_table(pa.table({"x": [1, 2], "c": ["u", "v"], "y": [0, 1]}), folder / "a.parquet")
    other = pa.array(["3", "oops"]) if second == pa.string() else pa.array([3, 4], pa.date32())
    pq.write_table(pa.table({"x": other, "c": ["u", "v"], "y": [0, 1]}), folder / "b.parquet")
    (tmp_path / "s.yaml").write_text(SPEC.format(stream=stream))
    report = tdsl.validate(tmp_path / "s.yaml")
    expected = (
        f"column 'x' is int64 in {folder / 'a.parquet'} and {second} in {folder / 'b.parquet'}"
    )
    assert [d.message for d in report.errors] == [expected]
    assert report.errors[0].hint.startswith("write the column with one type in every file")
    assert "s.yaml:4:" in report.format()  # at the spec's `file:` line
    with pytest.raises(DataError) as caught:  # as `tdsl predict --input` reads a folder
        parquet.read_parquet(folder, (), wanted={"x"})
    assert caught.value.problems[0].message == expected


def test_a_column_not_read_may_disagree(tmp_path):
    folder = _folder(tmp_path, (pa.int64(), pa.int64()))
    pq.write_table(
        pa.table({"x": [7.0], "c": pa.array([1], pa.int64()), "y": [0]}), folder / "p2.parquet"
    )
    table = parquet.read_parquet(folder, ("file",), wanted={"x"})
    assert table.floats("x", frozenset()).tolist() == [*X, 7.0]


@pytest.mark.parametrize("stream", ["never", "always"])
def test_a_folder_of_int_and_double_files_trains(tmp_path, stream):
    """pandas writes an integer column with a missing cell as double."""
    _folder(tmp_path, (pa.int64(), pa.float64()), (pa.string(), pa.large_string()))
    (tmp_path / "s.yaml").write_text(SPEC.format(stream=stream))
    report = tdsl.validate(tmp_path / "s.yaml")
    assert not report.errors, report.format()


def test_columns_all_does_not_read_an_excluded_column(tmp_path):
    """An id column written as int64 in one file and string in another, left out."""
    folder = _folder(tmp_path, (pa.int64(), pa.int64()))
    for part, ids in enumerate((pa.array([1, 2, 3]), pa.array(["a4", "a5", "a6"]))):
        file = folder / f"p{part}.parquet"
        pq.write_table(pq.read_table(file).append_column("id", ids), file)
    spec = SPEC.format(stream="never").replace(
        "  columns:\n    - {name: x, transform: standardize}\n    - {name: c, transform: onehot}\n",
        "  columns: all\n  exclude: [id]\n",
    )
    (tmp_path / "s.yaml").write_text(spec.replace("shape: [3]", "shape: [4]"))
    report = tdsl.validate(tmp_path / "s.yaml")
    assert not report.errors, report.format()
    (tmp_path / "s.yaml").write_text(spec.replace("exclude: [id]", "exclude: []"))
    report = tdsl.validate(tmp_path / "s.yaml")
    assert [d.message for d in report.errors][0].startswith("column 'id' is int64 in")
