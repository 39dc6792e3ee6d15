"""CSV files read through Arrow give what Python's csv module and float() give, cell for cell:
quotes, line breaks inside quotes, empty and missing cells, whitespace, unicode, numbers
written in every way float() takes them, and the lines problems are reported on."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tdsl import spec as D
from tdsl.data import arrow_text, csvfile, memory
from tdsl.data.base import Context, DataError, Problems
from tdsl.data.table import prepare

TRICKY = (
    "num,cat,note,label\n"
    '1e-3,"a, b",plain,yes\n'
    ' 2.5 , a ,"two\nlines",no\n'
    '+1,café,"say ""hi""",yes\n'
    ".5,,x,no\n"
    "\n"  # a blank line: skipped, but counted in line numbers
    "NA,a,,yes\n"
    "1_000,café,y,no\n"
    "-0,\u00a0b\u00a0,z,yes\n"
    "١٢,a,w,no\n"
)


def _reference(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, rows and first lines as the csv module reads them (the old reader's loop)."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        records, line = [], 1
        for row in reader:
            if row:
                records.append((line, row))
            line = reader.line_num + 1
    return records[0][1], [r for _, r in records[1:]], [ln for ln, _ in records[1:]]


def _float(text: str, missing: frozenset[str]) -> float:
    return math.nan if text.strip() in missing else float(text.strip())


@pytest.fixture
def tricky(tmp_path: Path) -> Path:
    path = tmp_path / "t.csv"
    path.write_text("\ufeff" + TRICKY, encoding="utf-8")  # with a byte-order mark
    return path


def test_cells_numbers_and_lines_match_the_csv_module(tricky):
    header, rows, lines = _reference(tricky)
    missing = csvfile.DEFAULT_MISSING
    table = csvfile.read_csv(tricky, ",", ("file",))
    assert table.header == tuple(header) and len(table) == len(rows) == 8
    for at, name in enumerate(header):
        assert table.column(name) == [r[at] for r in rows], name
    problems = Problems()
    got = csvfile.numbers(table, "num", ("num",), missing, problems)
    expected = [_float(r[0], missing) for r in rows]
    np.testing.assert_array_equal(got, np.array(expected))
    assert not problems.items
    assert [table.where(i) for i in range(len(rows))] == [f"line {n} of {tricky}" for n in lines]
    codes, uniques = table.codes("cat")
    assert [uniques[c] for c in codes] == [r[1] for r in rows]


def test_arrow_numbers_equal_float_of_the_text(tmp_path):
    """The fast path (Arrow parses the column) gives float() of each cell, bit for bit."""
    rng = np.random.default_rng(0)
    values = rng.standard_normal(500) * 10.0 ** rng.integers(-8, 8, 500)
    texts = [repr(float(v)) for v in values] + ["1e-3", "1E5", "-0.0", "7", "", "NA", " 3 "]
    path = tmp_path / "n.csv"
    path.write_text("x,y\n" + "".join(f"{t},{i}\n" for i, t in enumerate(texts)))
    table = csvfile.read_csv(path, ",", ())
    fast = table.floats("x", csvfile.DEFAULT_MISSING)
    assert fast is not None  # Arrow read it: this is the fast path under test
    expected = [_float(t, csvfile.DEFAULT_MISSING) for t in texts]
    np.testing.assert_array_equal(fast, np.array(expected))
    assert table.floats("y", csvfile.DEFAULT_MISSING).dtype == np.float64


def test_a_bad_number_is_located_past_a_quoted_line_break(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text('x,t\n1,"a\nb"\ninf,c\n2,d\nfoo,e\n')
    table = csvfile.read_csv(path, ",", ())
    problems = Problems()
    csvfile.numbers(table, "x", ("x",), csvfile.DEFAULT_MISSING, problems)
    assert [p.message for p in problems.items] == [
        f"column 'x': line 4 of {path} has 'inf', not a number (1 more cells like it)"
    ]


def test_ragged_rows_are_reported_as_before(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("a,b\n1,2\n3\n4,5,6\n")
    with pytest.raises(DataError) as caught:
        csvfile.read_csv(path, ",", ("file",))
    assert caught.value.problems[0].message == (
        f"line 3 of {path} has 1 cells, the header has 2 (1 more rows like it)"
    )


def test_features_match_the_csv_module_path(tricky):
    """A table source's features: standardized numbers (median fill) and one-hot
    categories, computed here from the csv module's cells."""
    source = D.Table(
        file=str(tricky),
        columns=(
            D.Column(name="num", transform="standardize", fill="median", indicator=True),
            D.Column(name="cat", transform="onehot", unknown=True),
        ),
        target="label",
        target_kind="class",
        split=D.Split(train=1.0, val=0.0, test=0.0),
    )
    splits, signature = prepare(source, Context(tricky.parent))
    header, rows, _ = _reference(tricky)
    order = splits.train.target  # class ids; rows come shuffled, so compare as sets of rows
    missing = frozenset(source.missing)
    num = np.array([_float(r[0], missing) for r in rows])
    filled = np.where(np.isnan(num), np.median(num[~np.isnan(num)]), num)
    standard = (filled - filled.mean()) / filled.std()
    categories = sorted({r[1].strip() for r in rows} - missing)
    expected = []
    for value, absent, row in zip(standard, np.isnan(num), rows, strict=True):
        cell = row[1].strip()
        onehot = [float(cell == c) for c in categories]
        onehot.append(float(cell in missing or cell not in categories))
        expected.append([value, float(absent), *onehot])
    labels = sorted({r[3].strip() for r in rows})
    expected_t = torch.tensor(expected, dtype=torch.float32)
    got = splits.train.features[0]
    assert got.shape == expected_t.shape
    key = sorted(map(tuple, got.tolist()))
    assert key == sorted(map(tuple, expected_t.tolist()))
    assert sorted(order.tolist()) == sorted(labels.index(r[3].strip()) for r in rows)
    assert signature.features[0].shape == (len(expected[0]),)


def test_a_file_too_large_for_memory_is_refused(tricky, monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda: 10)
    with pytest.raises(DataError) as caught:
        csvfile.read_csv(tricky, ",", ("file",))
    message = caught.value.problems[0].message
    length = tricky.stat().st_size
    need = 10 * 4 * memory.BYTES_PER_NUMBER + int(length * memory.BYTES_PER_FILE_BYTE)
    assert message.startswith(  # 10 lines after the header (a blank one, two in quotes)
        f"{tricky} ({length} bytes, about 10 rows of 4 columns to read) "
        f"needs about {need} bytes of memory to read"
    )
    assert message.endswith("and 10 bytes is available")


def test_a_column_whose_type_changes_after_the_first_block_is_read_again(tmp_path, monkeypatch):
    """Integers, then a decimal, then a name: read as int64, then float64, then text."""
    monkeypatch.setattr(arrow_text, "BLOCK_SIZE", 256)
    cells = [str(i % 7) for i in range(200)] + ["2.5"] + ["4"] * 50 + ["cat"]
    path = tmp_path / "m.csv"
    path.write_text("x,y\n" + "".join(f"{i},{c}\n" for i, c in enumerate(cells)))
    table = csvfile.read_csv(path, ",", (), numbers=("x",))
    assert table.column("y") == cells
    assert table.floats("y", csvfile.DEFAULT_MISSING) is None
    problems = Problems()
    csvfile.numbers(table, "y", ("y",), csvfile.DEFAULT_MISSING, problems)
    assert [p.message for p in problems.items] == [
        f"column 'y': line {len(cells) + 1} of {path} has 'cat', not a number"
    ]
    np.testing.assert_array_equal(table.floats("x", csvfile.DEFAULT_MISSING), np.arange(252.0))


def test_a_declared_number_column_with_text_falls_back_to_cells(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("x,y\n1,a\nfoo,b\n 2 ,c\n")
    table = csvfile.read_csv(path, ",", (), numbers=("x",), text=("y",))
    problems = Problems()
    values = csvfile.numbers(table, "x", ("x",), csvfile.DEFAULT_MISSING, problems)
    assert np.isnan(values[1]) and values[0] == 1.0 and values[2] == 2.0
    assert [p.message for p in problems.items] == [
        f"column 'x': line 3 of {path} has 'foo', not a number"
    ]


@pytest.mark.parametrize(
    ("cells", "fast"),
    [
        (["1e308", "1e308", "-1e308"], True),  # finite cells whose sum overflows
        (["1", "inf", "2"], False),  # written out: checked cell by cell
        (["1", "", "-inf"], False),  # a missing cell and a written infinity
        (["1", "", "2"], True),
    ],
)
def test_only_written_nan_or_inf_leaves_arrows_numbers(tmp_path, cells, fast):
    path = tmp_path / "n.csv"
    path.write_text("x\n" + "".join(f"{c}\n" for c in cells))
    table = csvfile.read_csv(path, ",", (), need_rows=False)
    assert (table.floats("x", csvfile.DEFAULT_MISSING) is not None) == fast
