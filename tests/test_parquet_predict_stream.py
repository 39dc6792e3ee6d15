"""`tdsl predict --input big.parquet` with a Parquet input larger than the memory limit:
predicted a row group at a time and written as it goes, giving the predictions the whole
reading gives (CSV, JSON lines, Parquet; .npy bit for bit); a bad cell in a later group is
located and leaves no output behind."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tdsl
from tdsl.runs.cli import main

SPEC = """\
name: pq
data:
  kind: parquet
  file: train.parquet
  stream: {stream}
  columns:
    - {{name: x, transform: standardize}}
    - {{name: c, transform: onehot, unknown: true}}
  target: y
  target_kind: binary
  split: {{train: 0.75, val: 0.25}}
model:
  inputs: [{{shape: [5]}}]
  layers: [{{op: linear, out_features: 1}}]
loss: {{kind: bce_with_logits}}
optimizer: {{kind: adam, lr: 0.01}}
train: {{epochs: 1, batch_size: 8}}
"""


def _rows(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    return pa.table(
        {"x": x, "c": pa.array(["u", "v", "w"][i % 3] for i in range(n)), "y": (x > 0) * 1}
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stream")
    pq.write_table(_rows(40, 0), folder / "train.parquet")
    pq.write_table(_rows(3000, 1), folder / "big.parquet", row_group_size=400)
    runs = {}
    for stream in ("auto", "never"):
        (folder / f"{stream}.yaml").write_text(SPEC.format(stream=stream))
        spec = tdsl.load(folder / f"{stream}.yaml")
        runs[stream], _ = tdsl.run(spec, folder / f"run_{stream}", progress=False)
    return folder, runs


def _predict(run, source, output) -> int:
    return main(["predict", str(run), "--input", str(source), "--output", str(output)])


LIMIT = "60K"  # the input needs ~96 KB whole, a row group ~13 KB


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet", ".npy"])
def test_a_streamed_input_gives_the_whole_readings_output(trained, monkeypatch, suffix):
    folder, runs = trained
    whole, parts = folder / f"whole{suffix}", folder / f"parts{suffix}"
    assert _predict(runs["auto"], folder / "big.parquet", whole) == 0
    monkeypatch.setenv("TDSL_MEMORY_LIMIT", LIMIT)
    assert _predict(runs["auto"], folder / "big.parquet", parts) == 0
    if suffix == ".npy":  # the raw outputs: bit for bit
        assert parts.read_bytes() == whole.read_bytes()
        return
    got, expected = _columns(parts), _columns(whole)
    assert list(got) == list(expected) == ["probability", "label"]
    assert got["label"] == expected["label"]
    # The sigmoid of a group may round its last bit otherwise than that of the whole
    # (torch's vector loop and its tail): equal to float32 rounding.
    np.testing.assert_allclose(got["probability"], expected["probability"], rtol=3e-7)
    if suffix == ".parquet":
        assert pq.ParquetFile(parts).num_row_groups > 1  # really written a group at a time


def _columns(path) -> dict[str, list]:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pydict()
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines()]
    else:
        with path.open(newline="") as handle:
            rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(handle)]
    return {name: [r[name] for r in rows] for name in rows[0]}


def test_with_stream_never_the_input_is_refused_as_before(trained, monkeypatch, capsys):
    folder, runs = trained
    monkeypatch.setenv("TDSL_MEMORY_LIMIT", LIMIT)
    out = folder / "never.csv"
    assert _predict(runs["never"], folder / "big.parquet", out) == 1
    assert "needs about 96.0 KB of memory to read, and 60.0 KB is available" in (
        capsys.readouterr().err
    )
    assert not out.exists()


def test_a_bad_cell_in_a_later_group_is_located_and_leaves_no_output(trained, monkeypatch, capsys):
    folder, runs = trained
    bad = _rows(3000, 1).to_pydict()
    bad["c"][2500] = None
    bad["x"][2500] = float("inf")
    pq.write_table(pa.table(bad), folder / "bad.parquet", row_group_size=400)
    monkeypatch.setenv("TDSL_MEMORY_LIMIT", LIMIT)
    out = folder / "bad.csv"
    assert _predict(runs["auto"], folder / "bad.parquet", out) == 1
    err = capsys.readouterr().err
    assert f"row 2501 of {folder / 'bad.parquet'} (row group 6)" in err
    assert not out.exists() and not list(folder.glob(".bad.csv.*"))
