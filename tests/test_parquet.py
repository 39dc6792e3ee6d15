"""`kind: parquet`: a file or a folder of Parquet files, with a CSV source's columns,
targets and transforms; columns checked from the schema alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import tdsl
from tdsl.data import parquet

SPEC = """\
name: pq
data:
  kind: parquet
  file: {file}
  columns:
    - {{name: a, transform: standardize, fill: median}}
    - {{name: b, transform: minmax}}
    - {{name: c, transform: onehot, unknown: true}}
  target: y
  target_kind: binary
  split: {{train: 0.8, val: 0.2}}
model:
  inputs: [{{shape: [5]}}]
  layers: [{{op: linear, out_features: 1}}]
loss: {{kind: bce_with_logits}}
optimizer: {{kind: adam, lr: 0.01}}
train: {{epochs: 1, batch_size: 16}}
"""


def _rows(n: int = 60) -> pa.Table:
    rng = np.random.default_rng(0)
    a = rng.standard_normal(n)
    a[3] = np.nan  # NaN and null are both missing cells
    return pa.table(
        {
            "a": pa.array(a, mask=np.arange(n) == 4),
            "b": rng.integers(0, 9, n),
            "c": pa.array([["u", "v", None][i % 3] for i in range(n)]),
            "y": (a > 0).astype(np.int64),
        }
    )


def _csv_of(table: pa.Table, path: Path) -> None:
    """The same rows as a CSV (nulls and NaN as empty cells)."""
    lines = ["a,b,c,y"]
    for row in table.to_pylist():
        a = "" if row["a"] is None or np.isnan(row["a"]) else repr(row["a"])
        lines.append(f"{a},{row['b']},{row['c'] or ''},{row['y']}")
    path.write_text("\n".join(lines) + "\n")


def test_a_parquet_file_and_folder_give_the_csv_features(tmp_path):
    rows = _rows()
    pq.write_table(rows, tmp_path / "t.parquet", row_group_size=16)
    (tmp_path / "d").mkdir()
    pq.write_table(rows.slice(0, 25), tmp_path / "d" / "p1.parquet")
    pq.write_table(rows.slice(25), tmp_path / "d" / "p2.parquet")
    _csv_of(rows, tmp_path / "t.csv")
    (tmp_path / "f.yaml").write_text(SPEC.format(file="t.parquet"))
    (tmp_path / "d.yaml").write_text(SPEC.format(file="d"))
    (tmp_path / "c.yaml").write_text(SPEC.format(file="t.csv").replace("parquet", "csv"))
    loaded = {}
    for name in ("f", "d", "c"):
        spec = tdsl.load(tmp_path / f"{name}.yaml")
        assert tdsl.validate(spec).ok, tdsl.validate(spec).format()
        loaded[name] = tdsl.load_data(spec)
    for name in ("d", "c"):
        for split in ("train", "val"):
            ours, theirs = getattr(loaded["f"], split), getattr(loaded[name], split)
            assert torch.equal(ours.features[0], theirs.features[0]), (name, split)
            assert torch.equal(ours.target, theirs.target)


def test_a_missing_column_is_found_in_the_schema_without_reading_rows(tmp_path, monkeypatch):
    pq.write_table(_rows(), tmp_path / "t.parquet")
    (tmp_path / "s.yaml").write_text(SPEC.format(file="t.parquet").replace("name: b,", "name: bb,"))

    def no_reading(*args, **kwargs):
        raise AssertionError("rows were read")

    monkeypatch.setattr(parquet, "_read_rows", no_reading)
    report = tdsl.validate(tmp_path / "s.yaml")
    assert [d.message for d in report.errors] == [f"no column 'bb' in {tmp_path / 't.parquet'}"]
    assert report.errors[0].hint == "did you mean 'b'?"


def test_csv_layout_keys_and_empty_folders_are_refused(tmp_path):
    (tmp_path / "d").mkdir()
    spec = SPEC.format(file="d").replace("  target: y\n", "  target: y\n  delimiter: ';'\n")
    (tmp_path / "s.yaml").write_text(spec)
    report = tdsl.validate(tmp_path / "s.yaml")
    assert [d.message for d in report.errors] == ["delimiter applies to csv files, not to parquet"]
    (tmp_path / "s.yaml").write_text(SPEC.format(file="d"))
    report = tdsl.validate(tmp_path / "s.yaml")
    assert [d.message for d in report.errors] == [
        f"no .parquet files in the folder {tmp_path / 'd'}"
    ]


def test_a_bad_cell_is_located_by_row_and_file(tmp_path):
    table = _rows().set_column(0, "a", pa.array(["1.5"] * 59 + ["x"]))
    pq.write_table(table.slice(0, 30), tmp_path / "p1.parquet")
    pq.write_table(table.slice(30), tmp_path / "p2.parquet")
    (tmp_path / "s.yaml").write_text(SPEC.format(file="."))
    report = tdsl.validate(tmp_path / "s.yaml")
    messages = [d.message for d in report.errors]
    assert messages == [f"column 'a': row 30 of {tmp_path / 'p2.parquet'} has 'x', not a number"]


@pytest.mark.parametrize("free", [10])
def test_too_little_memory_is_refused_before_reading(tmp_path, monkeypatch, free):
    pq.write_table(_rows(), tmp_path / "t.parquet")
    (tmp_path / "s.yaml").write_text(SPEC.format(file="t.parquet"))
    monkeypatch.setattr(parquet, "available_memory", lambda: free)
    report = tdsl.validate(tmp_path / "s.yaml")
    assert (
        "(60 rows of 4 columns) needs about 3.8 KB of memory to read, and 10 bytes is available"
        in (report.format())
    )
