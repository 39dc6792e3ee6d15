"""CSV files with old-Mac (bare `\\r`), Windows (`\\r\\n`) and mixed line endings, a byte-order
mark and no line break after the last row read as the `\\n` file does: the same header, rows,
numbers, texts and line numbers, whether one reader reads the file or parts of it are read
in parallel (cut at line breaks of every kind)."""

from __future__ import annotations

import numpy as np
import pytest

from tdsl import spec as D
from tdsl.data import arrow_stream, arrow_text, csv_cuts, csvfile
from tdsl.data.base import Context, DataError, Problems
from tdsl.data.table import prepare

LINES = ["x,n,s,label"] + [
    f"{'' if i % 11 == 0 else f'{i * 0.25 - 9:.2f}'},{i},{'abc'[i % 3] * (1 + i % 2)},{i % 2}"
    for i in range(120)
]


def _joined(lines: list[str], kind: str) -> bytes:
    if kind == "mixed_crlf_lf":
        text = "".join(line + ("\r\n" if i % 2 else "\n") for i, line in enumerate(lines))
    elif kind == "mixed_cr_lf":  # two files of different origin pasted together
        half = len(lines) // 2
        text = "\n".join(lines[:half]) + "\n" + "\r".join(lines[half:]) + "\r"
    elif kind == "cr_no_last_break":
        text = "\r".join(lines)
    elif kind == "bom_cr":
        text = "\ufeff" + "\r".join(lines) + "\r"
    elif kind == "no_last_break":
        text = "\n".join(lines)
    else:
        text = {"lf": "\n", "cr": "\r", "crlf": "\r\n"}[kind].join(lines + [""])
    return text.encode()


def _parts(monkeypatch, count: int) -> None:
    monkeypatch.setattr(arrow_stream, "PART_BYTES", 1)
    monkeypatch.setattr(arrow_stream, "cores", lambda: count)
    monkeypatch.setattr(arrow_text, "BLOCK_SIZE", 256)


def _read(path):
    table = csvfile.read_csv(path, ",", (), text={"s"}, numbers={"x"})
    missing = csvfile.DEFAULT_MISSING
    numbers = [table.floats(n, missing).tolist() for n in ("x", "n", "label")]
    return table.header, len(table), np.nan_to_num(numbers, nan=-1.5).tolist(), table.column("s")


KINDS = ["cr", "crlf", "mixed_crlf_lf", "mixed_cr_lf", "cr_no_last_break", "bom_cr"]


@pytest.mark.parametrize("parts", [1, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_every_line_ending_reads_as_the_newline_file(tmp_path, monkeypatch, kind, parts):
    plain, other = tmp_path / "lf.csv", tmp_path / f"{kind}.csv"
    plain.write_bytes(_joined(LINES, "lf"))
    other.write_bytes(_joined(LINES, kind))
    expected = _read(plain)
    assert expected[1] == 120
    if parts > 1:
        _parts(monkeypatch, parts)
        assert len(arrow_stream.cuts(other, 12)[1]) == parts + 1  # really cut
    assert _read(other) == expected


@pytest.mark.parametrize("at", range(1, 9))
def test_cuts_never_split_a_line_break(tmp_path, monkeypatch, at):
    """A cut falling on a `\\r\\n` goes past both bytes: no part starts with an empty line,
    and every part starts after a break."""
    path = tmp_path / "m.csv"
    data = _joined(LINES[:4], "mixed_crlf_lf") + b"7,1,a,0\r"
    path.write_bytes(data)
    end = csv_cuts._cut_after(path, at, 0, len(data))
    assert data[end - 1 : end] in (b"\n", b"\r") and data[end : end + 1] != b"\n"
    assert b"\r" not in data[at : end - 1] and b"\n" not in data[at : end - 1]


@pytest.mark.parametrize("kind", ["cr", "mixed_cr_lf", "bom_cr"])
def test_problems_are_located_on_the_same_line(tmp_path, kind):
    lines = [*LINES]
    lines[100] = "oops,1,a,1"
    lines[110] = "1,2,a"  # a ragged row
    plain, other = tmp_path / "lf.csv", tmp_path / f"{kind}.csv"
    plain.write_bytes(_joined(lines[:105], "lf"))
    other.write_bytes(_joined(lines[:105], kind))

    def bad_cell(path):
        table = csvfile.read_csv(path, ",", ())
        problems = Problems()
        csvfile.numbers(table, "x", ("x",), csvfile.DEFAULT_MISSING, problems)
        return problems.items[0].message.replace(str(path), "FILE")

    assert (
        bad_cell(other)
        == bad_cell(plain)
        == "column 'x': line 101 of FILE has 'oops', not a number"
    )
    plain.write_bytes(_joined(lines, "lf"))
    other.write_bytes(_joined(lines, kind))
    messages = []
    for path in (plain, other):
        with pytest.raises(DataError) as caught:
            csvfile.read_csv(path, ",", ())
        messages.append(caught.value.problems[0].message.replace(str(path), "FILE"))
    assert messages[0] == messages[1]
    assert messages[0].startswith("line 111 of FILE has 3 cells, the header has 4")


def test_a_quoted_cell_may_hold_a_bare_carriage_return(tmp_path):
    path = tmp_path / "q.csv"
    path.write_bytes(b'a,b\r"one\rtwo",1\r"x",2\r')
    table = csvfile.read_csv(path, ",", (), text={"a"})
    assert table.column("a") == ["one\rtwo", "x"]
    assert table.where(1) == f"line 4 of {path}"


def test_features_of_an_old_mac_file_equal_the_newline_file(tmp_path):
    def features(kind):
        path = tmp_path / f"{kind}.csv"
        path.write_bytes(_joined(LINES, kind))
        source = D.Table(
            file=str(path),
            columns=[
                D.Column(name="x", transform="standardize", fill="mean"),
                D.Column(name="s", transform="onehot"),
            ],
            target="label",
            target_kind="class",
            split=D.Split(train=0.75, val=0.25),
        )
        splits, _ = prepare(source, Context(tmp_path))
        return splits.train.features[0].tolist(), splits.val.target.tolist()

    assert features("cr") == features("lf")
