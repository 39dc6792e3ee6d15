"""A Parquet source larger than memory trains streamed by row groups: the same splits and
fitted transforms as in memory, batches independent of the workers, bitwise resumes, and
located problems."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from helpers import Interrupt

import tdsl
from tdsl.data import clear_cache
from tdsl.data.parquet_fit import Median
from tdsl.data.parquet_rows import StreamedRows
from tdsl.data.tensors import TensorData
from tdsl.runs.directories import run
from tdsl.runs.resuming import resume

SPEC = """\
name: pqs
seed: 5
data:
  kind: parquet
  file: data
  workers: 0
  columns:
    - {{name: a, transform: standardize, fill: median}}
    - {{name: b, transform: minmax, fill: mean, indicator: true}}
    - {{name: c, transform: onehot, unknown: true}}
  target: y
  target_kind: class
  split: {{train: 0.7, val: 0.2, test: 0.1{stratify}}}
model:
  inputs: [{{shape: [7]}}]
  layers: [{{op: linear, out_features: 16}}, {{op: relu}}, {{op: linear, out_features: 3}}]
loss: {{kind: cross_entropy}}
optimizer: {{kind: adam, lr: 0.05}}
metrics: [accuracy]
train: {{epochs: {epochs}, batch_size: 32}}
"""
# The folder's rows need 600 * 4 columns * 16 bytes = 38 KB in memory; a row group 3.2 KB.
LIMIT = "20K"


def _write(folder: Path, n: int = 600, stratify: bool = False, epochs: int = 4) -> Path:
    rng = np.random.default_rng(1)
    a = rng.standard_normal(n)
    b = rng.integers(0, 9, n).astype(float)
    y = np.where(a > 0.5, "high", np.where(a < -0.5, "low", "mid"))
    a[[3, 70, 400]] = np.nan
    b[[10, 11]] = np.nan
    table = pa.table(
        {
            "a": pa.array(a, mask=np.arange(n) == 4),
            "b": b,
            "c": pa.array([["u", "v", None, "w"][i % 4] for i in range(n)]),
            "y": y,
        }
    )
    (folder / "data").mkdir()
    pq.write_table(table.slice(0, 250), folder / "data" / "p1.parquet", row_group_size=50)
    pq.write_table(table.slice(250), folder / "data" / "p2.parquet", row_group_size=50)
    spec = folder / "s.yaml"
    spec.write_text(SPEC.format(stratify=", stratify: true" if stratify else "", epochs=epochs))
    return spec


def _load(path: Path, streamed: bool, monkeypatch) -> tdsl.data.Splits:
    clear_cache()
    if streamed:
        monkeypatch.setenv("TDSL_MEMORY_LIMIT", LIMIT)
    else:
        monkeypatch.delenv("TDSL_MEMORY_LIMIT", raising=False)
    return tdsl.load_data(tdsl.load(path))


def _rows(split) -> torch.Tensor:
    """A split's features and targets, sorted by row (order aside)."""
    if isinstance(split, TensorData):
        batches = list(split.batches(10_000))
    else:
        batches = list(split.batches(64))
    rows = torch.cat(
        [
            torch.cat([b.features[0].double(), b.target.double().reshape(b.size, -1)], 1)
            for b in batches
        ]
    )
    return rows[np.lexsort(rows.numpy().T[::-1].copy())]


@pytest.mark.parametrize("stratify", [False, True])
def test_streamed_splits_and_transforms_equal_the_in_memory_ones(tmp_path, monkeypatch, stratify):
    spec = _write(tmp_path, stratify=stratify)
    memory = _load(spec, False, monkeypatch)
    streamed = _load(spec, True, monkeypatch)
    assert isinstance(memory.train, TensorData) and isinstance(streamed.train, StreamedRows)
    ours, theirs = json.loads(memory.fitted.to_json()), json.loads(streamed.fitted.to_json())
    assert theirs["classes"] == ours["classes"] == ["high", "low", "mid"]
    assert theirs["features"] == ours["features"]
    for mine, other in zip(ours["columns"], theirs["columns"], strict=True):
        assert mine.keys() == other.keys()
        for key, value in mine.items():
            close = isinstance(value, float)  # sums in another order: the last bits differ
            assert value == (pytest.approx(other[key], rel=1e-12) if close else other[key])
    for name in ("train", "val", "test"):
        one, two = getattr(memory, name), getattr(streamed, name)
        assert len(one) == len(two)
        assert torch.allclose(_rows(one), _rows(two), rtol=1e-6, atol=1e-6), name


def test_the_median_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    for values in (rng.standard_normal(1001), rng.integers(-5, 5, 400).astype(float)):
        median = Median(len(values))
        for _ in range(Median.passes):
            for part in np.array_split(values, 7):
                median.add(part)
            median.advance()
        assert median.value() == np.median(values)


def test_a_streamed_run_trains_and_resumes_bitwise(tmp_path, monkeypatch):
    spec = tdsl.load(_write(tmp_path, epochs=3))
    monkeypatch.setenv("TDSL_MEMORY_LIMIT", LIMIT)
    clear_cache()
    _, straight = run(spec, tmp_path / "straight")
    losses = [row["loss"] for row in straight.history]
    assert losses[-1] < 0.6 * losses[0] and straight.history[-1]["val_accuracy"] > 0.8
    with pytest.raises(KeyboardInterrupt):
        run(spec, tmp_path / "cut", callbacks=[Interrupt(after=1)])
    clear_cache()
    resumed = resume(tmp_path / "cut")
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(resumed.history) == drop(straight.history)
    for name, tensor in straight.state.model_state_dict().items():
        assert torch.equal(tensor, resumed.state.model_state_dict()[name]), name
    kept = json.loads((tmp_path / "straight" / "transforms.json").read_text())
    assert kept == json.loads((tmp_path / "cut" / "transforms.json").read_text())


def test_workers_do_not_change_the_batches(tmp_path, monkeypatch):
    train = _load(_write(tmp_path), True, monkeypatch).train
    assert isinstance(train, StreamedRows)
    assert train.window == 4 and len(train.groups) == 12
    alone = list(train.batches(32, order_seed=11))
    helped_by = attrs.evolve(train, workers=2)
    helped = list(helped_by.batches(32, order_seed=11))
    assert len(alone) == len(helped) == train.num_batches(32)
    for one, two in zip(alone, helped, strict=True):
        assert torch.equal(one.features[0], two.features[0])
        assert torch.equal(one.target, two.target)
    other = list(train.batches(32, order_seed=12))
    assert not torch.equal(alone[0].target, other[0].target) or not torch.equal(
        alone[0].features[0], other[0].features[0]
    )
    # The next epoch, by the same (kept) workers: that epoch's own order.
    for one, two in zip(other, helped_by.batches(32, order_seed=12), strict=True):
        assert torch.equal(one.features[0], two.features[0]) and torch.equal(one.target, two.target)
    # Each epoch reads every row group once, and every row once.
    windows, _ = train.plan(11)
    assert sorted(g for w in windows for g in w) == list(train.groups)
    assert [len(w) for w in windows] == [4, 4, 4]
    assert sum(b.size for b in alone) == len(train)


def test_a_bad_cell_is_located_by_file_row_and_row_group(tmp_path, monkeypatch):
    spec = _write(tmp_path)
    for path in sorted((tmp_path / "data").iterdir()):  # b as text, one cell not a number
        table = pq.read_table(path)
        b = [None if np.isnan(v) else str(v) for v in table.column("b").to_numpy()]
        b[123] = "x" if path.name == "p2.parquet" else b[123]
        pq.write_table(table.set_column(1, "b", pa.array(b)), path, row_group_size=50)
    monkeypatch.setenv("TDSL_MEMORY_LIMIT", LIMIT)
    report = tdsl.validate(spec)
    assert [d.message for d in report.errors] == [
        f"column 'b': row 124 of {path} (row group 2) has 'x', not a number"
    ]
    assert report.errors[0].path == ("data", "columns", 1)


def test_a_row_group_too_large_for_memory_is_refused_with_the_figures(tmp_path, monkeypatch):
    spec = _write(tmp_path)
    monkeypatch.setenv("TDSL_MEMORY_LIMIT", "3000")
    report = tdsl.validate(spec)
    first = tmp_path / "data" / "p1.parquet"
    assert [d.message for d in report.errors] == [
        f"row group 0 of {first} (50 rows of 4 columns) needs about 3.2 KB of memory to "
        "read, and 3.0 KB is available"
    ]
    assert "row_group_size" in report.errors[0].hint


def test_columns_all_is_inferred_and_fitted_as_in_memory(tmp_path, monkeypatch):
    spec = _write(tmp_path)
    text = spec.read_text()
    start, end = text.index("  columns:\n"), text.index("  target: y")
    spec.write_text(text[:start] + "  columns: all\n" + text[end:])
    memory = _load(spec, False, monkeypatch).fitted.state
    streamed = _load(spec, True, monkeypatch).fitted.state
    assert (
        streamed["features"]
        == memory["features"]
        == [
            *("a", "a:missing", "b", "b:missing"),
            *("c=u", "c=v", "c=w", "c=<unknown>"),
        ]
    )
    assert [s["fill"] for s in streamed["columns"][:2]] == [
        s["fill"] for s in memory["columns"][:2]
    ]


def test_stream_always_streams_and_never_refuses(tmp_path, monkeypatch):
    spec = _write(tmp_path)
    text = spec.read_text()
    spec.write_text(text.replace("  workers: 0\n", "  workers: 0\n  stream: always\n"))
    assert isinstance(_load(spec, False, monkeypatch).train, StreamedRows)
    spec.write_text(text.replace("  workers: 0\n", "  workers: 0\n  stream: never\n"))
    monkeypatch.setenv("TDSL_MEMORY_LIMIT", LIMIT)
    clear_cache()
    report = tdsl.validate(spec)
    assert [d.message for d in report.errors] == [
        f"{tmp_path / 'data'} (600 rows of 4 columns) needs about 38.4 KB of memory to read, "
        "and 20.0 KB is available"
    ]


def test_an_unreadable_memory_limit_is_a_located_error(tmp_path, monkeypatch):
    spec = _write(tmp_path)
    monkeypatch.setenv("TDSL_MEMORY_LIMIT", "lots")
    report = tdsl.validate(spec)
    assert [d.message for d in report.errors] == ["TDSL_MEMORY_LIMIT='lots' is not a size"]


def test_a_val_file_and_named_targets_stream_as_in_memory(tmp_path, monkeypatch):
    spec = _write(tmp_path)
    (tmp_path / "val").mkdir()
    (tmp_path / "data" / "p2.parquet").rename(tmp_path / "val" / "p2.parquet")
    for path in (tmp_path / "data" / "p1.parquet", tmp_path / "val" / "p2.parquet"):
        table = pq.read_table(path)
        r = np.arange(table.num_rows, dtype=np.float64) / 100
        pq.write_table(table.append_column("r", pa.array(r)), path, row_group_size=50)
    text = spec.read_text().replace("  file: data\n", "  file: data\n  val_file: val\n")
    text = text.replace(
        "  target: y\n  target_kind: class\n",
        "  targets: {kind: {column: y, kind: class}, size: {column: r, kind: regression}}\n",
    )
    spec.write_text(text.replace("train: 0.7, val: 0.2, test: 0.1", "train: 0.8, val: 0.2"))
    memory = _load(spec, False, monkeypatch)
    streamed = _load(spec, True, monkeypatch)
    assert isinstance(streamed.val, StreamedRows) and streamed.test is None
    assert streamed.fitted.state["classes"] == memory.fitted.state["classes"]
    assert streamed.fitted.state["classes"]["kind"] == ["high", "low", "mid"]
    for name in ("train", "val"):
        one, two = getattr(memory, name), getattr(streamed, name)
        assert len(one) == len(two)
        assert torch.allclose(_rows(one), _rows(two), rtol=1e-6, atol=1e-6), name
