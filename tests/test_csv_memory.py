"""The memory a CSV file needs is estimated per cell read (rows counted in its first block),
not per byte of file: a file of 1-character numbers takes ~10x its size, and was let through
by a figure per byte until the system killed the process part way."""

from __future__ import annotations

import pytest

import tdsl
from tdsl.data import csvfile, memory
from tdsl.data.base import DataError

SPEC = """\
name: m
data:
  kind: csv
  file: {file}
  columns: [a, b, c]
  target: y
  target_kind: binary
  split: {{train: 0.8, val: 0.2}}
model:
  inputs: [{{shape: [3]}}]
  layers: [{{op: linear, out_features: 1}}]
loss: {{kind: bce_with_logits}}
optimizer: {{kind: adam, lr: 0.01}}
train: {{epochs: 1, batch_size: 64}}
"""


def _flags(path, rows: int, ending: str = "\n") -> None:
    """`0,1,1,0` rows: 8 bytes for 4 numbers (16 bytes of float32 features alone)."""
    body = "".join(f"{i % 2},{i // 2 % 2},1,{i % 3 % 2}{ending}" for i in range(rows))
    path.write_bytes(f"a,b,c,y{ending}{body}".encode())


def _decimals(path, rows: int) -> None:
    body = "".join(f"{i * 0.001:.6f},{-i * 0.002:.6f},{i * 3.5:.4f},{i % 2}\n" for i in range(rows))
    path.write_text("a,b,c,y\n" + body)


def test_a_file_of_short_numbers_is_refused_under_the_limit(tmp_path, monkeypatch):
    path = tmp_path / "flags.csv"
    _flags(path, 50_000)
    length = path.stat().st_size
    assert length * 1.5 < 1_500_000  # a figure per byte of file let it through
    monkeypatch.setenv(memory.LIMIT_VARIABLE, "1.5M")
    with pytest.raises(DataError) as caught:
        csvfile.read_csv(path, ",", ("file",))
    assert caught.value.problems[0].message == (
        f"{path} (400 KB, about 50,000 rows of 4 columns to read) needs about 3.3 MB "
        "of memory to read, and 1.5 MB is available"
    )
    (tmp_path / "s.yaml").write_text(SPEC.format(file="flags.csv"))
    report = tdsl.validate(tmp_path / "s.yaml")  # `tdsl validate` and `tdsl run`
    assert [d.message for d in report.errors] == [caught.value.problems[0].message]
    assert "s.yaml:4:" in report.format()


def test_only_the_columns_read_count(tmp_path, monkeypatch):
    path = tmp_path / "flags.csv"
    _flags(path, 50_000)
    monkeypatch.setenv(memory.LIMIT_VARIABLE, "2M")  # 2 columns need ~1.7 MB, 4 need 3.3
    table = csvfile.read_csv(path, ",", ("file",), wanted={"a", "y"})
    assert len(table) == 50_000
    with pytest.raises(DataError):
        csvfile.read_csv(path, ",", ("file",))


def test_a_file_of_long_numbers_of_the_same_size_fits(tmp_path, monkeypatch):
    path = tmp_path / "decimals.csv"
    _decimals(path, 12_000)  # about the flags file's bytes, a quarter of its cells
    assert 380_000 < path.stat().st_size < 480_000
    monkeypatch.setenv(memory.LIMIT_VARIABLE, "1.5M")
    assert len(csvfile.read_csv(path, ",", ("file",))) == 12_000


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_rows_are_counted_in_the_first_block_and_scaled(tmp_path, monkeypatch, ending):
    path = tmp_path / "flags.csv"
    _flags(path, 3000, ending)
    start, length = 7 + len(ending), path.stat().st_size
    assert memory.csv_rows(path, start, length) == 3000  # the whole body: counted
    path.write_bytes(path.read_bytes().removesuffix(ending.encode()))
    assert memory.csv_rows(path, start, path.stat().st_size) == 3000  # no last line break
    _flags(path, 3000, ending)
    monkeypatch.setattr(memory, "SAMPLE_BYTES", 1000)
    assert 2950 <= memory.csv_rows(path, start, length) <= 3050
