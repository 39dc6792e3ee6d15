"""Reading a CSV table once, cheaply: each text column's codes are made once and each number
column's training rows gathered once (for fitting and transforming both), the features come
out the same however they are blocked, integer columns and text columns read in pieces give
what a whole reading gives, and target columns are let go of once they are tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tdsl import spec as D
from tdsl import spec as S
from tdsl.data import arrow_stream, arrow_text, csvfile, gather, table_features
from tdsl.data.base import Context, DataError, Problems
from tdsl.data.table import prepare
from tdsl.data.tensors import split_index

ROWS = 300


def _write(path, rows: int = ROWS) -> None:
    rng = np.random.default_rng(0)
    lines = ["x,n,kind,y"]
    for i in range(rows):
        x = "" if i % 17 == 3 else f"{rng.standard_normal():.6f}"
        kind = "" if i % 23 == 5 else "abcde"[int(rng.integers(0, 5))]
        lines.append(f"{x},{int(rng.integers(-5, 50))},{kind},{i % 3}")
    path.write_text("\n".join(lines) + "\n")


def _source(path, **split) -> D.Table:
    return D.Table(
        file=str(path),
        columns=[
            D.Column(name="x", transform="standardize", fill="mean", indicator=True),
            D.Column(name="n", transform="minmax"),
            D.Column(name="kind", transform="onehot", unknown=True),
        ],
        target="y",
        target_kind="class",
        split=D.Split(**{"train": 0.8, "val": 0.2, **split}),
    )


def _expected(path, source: D.Table, train: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The features of `rows`, fitted on `train`, computed directly from the cells."""
    lines = [line.split(",") for line in path.read_text().splitlines()[1:]]
    x = np.array([float(r[0]) if r[0] else np.nan for r in lines])
    n = np.array([float(r[1]) for r in lines])
    kind = [r[2] for r in lines]
    fill = x[train][~np.isnan(x[train])].mean()
    filled = np.where(np.isnan(x), fill, x)
    mean, std = filled[train].mean(), filled[train].std()
    low, high = n[train].min(), n[train].max()
    categories = sorted({kind[i] for i in train} - {""})
    out = []
    for i in rows:
        onehot = [float(kind[i] == c) for c in categories] + [float(kind[i] not in categories)]
        out.append([(filled[i] - mean) / std, float(np.isnan(x[i])), (n[i] - low) / (high - low)])
        out[-1] += onehot
    return np.array(out)


@pytest.mark.parametrize("block_bytes", [table_features.BLOCK_BYTES, 64])
def test_features_are_the_same_however_they_are_blocked(tmp_path, monkeypatch, block_bytes):
    monkeypatch.setattr(table_features, "BLOCK_BYTES", block_bytes)  # 64: a row or two each
    path = tmp_path / "t.csv"
    _write(path)
    source = _source(path)
    splits, _ = prepare(source, Context(tmp_path))
    index = split_index(ROWS, source.split, torch.Generator().manual_seed(0), None, (0, 0))
    train, val = index.train.numpy(), index.val.numpy()
    got = splits.train.features[0].numpy()
    np.testing.assert_allclose(got, _expected(path, source, train, train), rtol=1e-6, atol=1e-6)
    got = splits.val.features[0].numpy()
    np.testing.assert_allclose(got, _expected(path, source, train, val), rtol=1e-6, atol=1e-6)


def test_features_in_bfloat16_match_float32_converted(tmp_path, monkeypatch):
    path = tmp_path / "t.csv"
    _write(path)
    source = _source(path)
    full, _ = prepare(source, Context(tmp_path))
    monkeypatch.setattr(table_features, "BLOCK_BYTES", 64)
    inputs = (S.Input(shape=(8,), dtype="bfloat16"),)
    half, _ = prepare(source, Context(tmp_path, inputs=inputs))
    assert half.train.features[0].dtype == torch.bfloat16
    torch.testing.assert_close(
        half.train.features[0], full.train.features[0].to(torch.bfloat16), rtol=0, atol=0
    )


def test_text_codes_are_made_once_and_training_rows_gathered_once(tmp_path, monkeypatch):
    path = tmp_path / "t.csv"
    _write(path)
    coded, gathered = [], []
    codes, pick = arrow_text.RawTable.codes, csvfile.CsvTable._pick

    def counting_codes(self, at):
        coded.append(at)
        return codes(self, at)

    def counting_pick(self, values):
        picked = pick(self, values)  # with rows: a gather of those rows
        if self.rows is not None and picked.dtype == np.float64:
            gathered.append(len(picked))
        return picked

    monkeypatch.setattr(arrow_text.RawTable, "codes", counting_codes)
    monkeypatch.setattr(csvfile.CsvTable, "_pick", counting_pick)
    splits, _ = prepare(_source(path), Context(tmp_path))
    assert coded == [2]  # the one text column, once for fitting and both splits
    train, val = len(splits.train), len(splits.val)
    # x and n: the training rows once each (fitted and transformed from one gather), the
    # validation rows once each; the whole columns (checked) are not gathered.
    assert sorted(gathered) == sorted([train, train, val, val])


def test_integer_columns_are_read_as_float64_arrays(tmp_path):
    path = tmp_path / "i.csv"
    path.write_text("a,b\n" + "".join(f"{i},{-i * 7}\n" for i in range(1000)) + "3,\n")
    table = csvfile.read_csv(path, ",", ())
    assert all(isinstance(v, np.ndarray) for v in table.raw.arrays.values())
    a = table.floats("a", csvfile.DEFAULT_MISSING)
    np.testing.assert_array_equal(a, [*range(1000), 3])
    b = table.floats("b", csvfile.DEFAULT_MISSING)
    np.testing.assert_array_equal(b[:-1], [-i * 7 for i in range(1000)])
    assert np.isnan(b[-1])  # an integer column with a missing cell: NaN there


def test_text_read_in_pieces_is_the_whole_column(tmp_path, monkeypatch):
    monkeypatch.setattr(arrow_text, "BLOCK_SIZE", 256)  # many batches
    monkeypatch.setattr(arrow_stream, "PIECE_BYTES", 100)  # compacted every batch or two
    path = tmp_path / "s.csv"
    cells = [f"w{i % 7}{'é' * (i % 3)}" for i in range(500)]
    path.write_text("s,x\n" + "".join(f"{c},{i}\n" for i, c in enumerate(cells)))
    table = csvfile.read_csv(path, ",", (), text={"s"})
    assert table.raw.arrays[0].num_chunks > 1
    assert table.column("s") == cells
    codes, uniques = table.codes("s")
    assert [uniques[c] for c in codes] == cells


def test_target_columns_are_let_go_of_once_read(tmp_path, monkeypatch):
    path = tmp_path / "t.csv"
    _write(path)
    forgotten = []
    forget = csvfile.CsvTable.forget

    def counting_forget(self, name):
        forgotten.append(name)
        forget(self, name)

    monkeypatch.setattr(csvfile.CsvTable, "forget", counting_forget)
    prepare(_source(path), Context(tmp_path))
    assert forgotten[0] == "y"  # before any feature column is made
    assert set(forgotten) == {"x", "n", "kind", "y"}


def _parts(monkeypatch, count: int) -> None:
    """Read files in `count` parts however small they are."""
    monkeypatch.setattr(arrow_stream, "PART_BYTES", 1)
    monkeypatch.setattr(arrow_stream, "cores", lambda: count)
    monkeypatch.setattr(arrow_text, "BLOCK_SIZE", 512)  # several batches per part


def _mixed(path, bad: str = "") -> list[str]:
    lines = ["x,n,s,label"]
    for i in range(400):
        x = "" if i % 13 == 0 else f"{i * 0.37 - 40:.3f}"
        lines.append(f"{x},{i - 200},{'abc'[i % 3] * (1 + i % 4)},{i % 5}")
        if i % 97 == 0:
            lines.append("")  # blank lines are skipped, wherever a cut falls
    if bad:
        lines[-30] = bad
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return lines


def _read_all(path):
    table = csvfile.read_csv(path, ",", (), text={"s"}, numbers={"x"})
    missing = csvfile.DEFAULT_MISSING
    return (
        len(table),
        [table.floats(n, missing) for n in ("x", "n", "label")],
        table.column("s"),
        table.codes("s"),
    )


@pytest.mark.parametrize("count", [2, 3, 7])
def test_a_file_read_in_parallel_parts_is_read_as_a_whole(tmp_path, monkeypatch, count):
    path = tmp_path / "m.csv"
    _mixed(path)
    rows, numbers, texts, (codes, uniques) = _read_all(path)
    _parts(monkeypatch, count)
    assert arrow_stream.cuts(path, 0)[1][1:-1]  # really cut
    got_rows, got_numbers, got_texts, (got_codes, got_uniques) = _read_all(path)
    assert got_rows == rows == 400
    for got, expected in zip(got_numbers, numbers, strict=True):
        np.testing.assert_array_equal(got, expected)
    assert got_texts == texts
    assert [got_uniques[c] for c in got_codes] == [uniques[c] for c in codes]


def test_cuts_fall_after_line_breaks(tmp_path, monkeypatch):
    path = tmp_path / "m.csv"
    _mixed(path)
    _parts(monkeypatch, 4)
    data = path.read_bytes()
    quoted, where = arrow_stream.cuts(path, 12)
    assert not quoted and where[0] == 12 and where[-1] == len(data) and len(where) == 5
    assert all(data[at - 1 : at] == b"\n" for at in where[1:-1])


@pytest.mark.parametrize(
    ("bad", "what"),
    [
        ("oops,1,a,1", "not a number"),  # a number column's cell: located, cell by cell
        ("1.5,2,a,3.5", None),  # an integer column becomes float in a later part
        ("1,2,a", "has 3 cells, the header has 4"),  # a ragged row, located
    ],
)
def test_a_later_part_fails_as_the_whole_file_would(tmp_path, monkeypatch, bad, what):
    path = tmp_path / "m.csv"
    _mixed(path, bad)

    def outcome():
        try:
            table = csvfile.read_csv(path, ",", (), text={"s"}, numbers={"x"})
        except DataError as exc:
            return [p.message for p in exc.problems]
        problems = Problems()
        found = [csvfile.numbers(table, n, (n,), csvfile.DEFAULT_MISSING, problems) for n in "xn"]
        label = table.floats("label", csvfile.DEFAULT_MISSING)
        cells = [np.nan_to_num(v, nan=-1.5).tolist() for v in (*found, label)]  # NaN != NaN
        return [p.message for p in problems.items], cells

    whole = outcome()
    _parts(monkeypatch, 3)
    assert outcome() == whole
    if what is not None:
        assert what in str(whole)


def test_a_part_of_only_blank_lines_holds_no_rows(tmp_path, monkeypatch):
    path = tmp_path / "b.csv"
    path.write_text("x,s\n1,a\n" + "\n" * 60 + "2,b\n")
    _parts(monkeypatch, 6)
    assert len(arrow_stream.cuts(path, 4)[1]) > 3  # parts in the blank lines
    table = csvfile.read_csv(path, ",", (), text={"s"})
    np.testing.assert_array_equal(table.floats("x", csvfile.DEFAULT_MISSING), [1.0, 2.0])
    assert table.column("s") == ["a", "b"]


def test_a_first_part_of_only_blank_lines_does_not_end_the_file(tmp_path, monkeypatch):
    path = tmp_path / "b.csv"
    path.write_text("x,s,t\n" + "\n" * 200 + "1,a,b\n2,b,c\n")
    _parts(monkeypatch, 3)
    table = csvfile.read_csv(path, ",", (), text={"s"})  # t: its type from no cell at all
    np.testing.assert_array_equal(table.floats("x", csvfile.DEFAULT_MISSING), [1.0, 2.0])
    assert table.column("s") == ["a", "b"] and table.column("t") == ["b", "c"]


@pytest.mark.parametrize("kind", [np.float64, np.float32, np.int32, np.int64])
def test_rows_gathered_on_every_core_are_numpys(monkeypatch, kind):
    monkeypatch.setattr(gather, "MIN_ROWS", 10)
    rng = np.random.default_rng(0)
    values = (rng.standard_normal(1000) * 100).astype(kind)
    rows = rng.permutation(1000)[:700].astype(np.int64)
    got = gather.take(values, rows)
    assert got.dtype == kind
    np.testing.assert_array_equal(got, values.take(rows))
    with pytest.raises(IndexError):
        gather.take(values, np.append(rows, 5000))
