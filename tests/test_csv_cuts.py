"""Cutting a CSV body with quotes into parts: every cut is a row's end as Arrow itself reads
the file, checked against pyarrow's reader on random small texts (cut at every line break the
quote count allows), and a file whose quotes could mislead the count is not cut at all."""

from __future__ import annotations

import io
import os
import time
from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tdsl.data import arrow_stream, arrow_text, csv_cuts, csvfile
from tdsl.data.base import DataError

HEADER = b"h,k\n"
# More examples for a longer hunt: TDSL_FUZZ_EXAMPLES=5000 pytest tests/test_csv_cuts.py
SCALE = int(os.environ.get("TDSL_FUZZ_EXAMPLES", "0")) or None


def _arrow(data: bytes, delimiter: str) -> list | str:
    """The rows one pyarrow reader gives (options as tdsl's, every cell text), or 'error'."""
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=["0", "1"]),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, newlines_in_values=True, ignore_empty_lines=True
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={"0": pa.string(), "1": pa.string()}, strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as exc:
        return [] if "Empty CSV file" in str(exc) else "error"
    return list(zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True))


@st.composite
def bodies(draw) -> tuple[str, str, int | None]:
    """(body, delimiter, rows: None where the body may break the quote check)."""
    delimiter = draw(st.sampled_from([",", ";"]))
    if draw(st.booleans()):  # any text at all
        alphabet = ["a", ",", ";", '"', "\n", "\r"]
        return "".join(draw(st.lists(st.sampled_from(alphabet), max_size=16))), delimiter, None
    inside = st.lists(st.sampled_from(["a", delimiter, "\n", "\r", '""']), max_size=4)
    cell = st.one_of(
        st.sampled_from(["", "a", "aa"]), inside.map(lambda parts: '"' + "".join(parts) + '"')
    )
    ends = st.sampled_from(["\n", "\r\n", "\r", "\n\n"])
    rows = draw(st.lists(st.tuples(cell, cell, ends), min_size=1, max_size=5))
    body = "".join(f"{a}{delimiter}{b}{end}" for a, b, end in rows)
    if draw(st.booleans()):  # the last row without its line break
        body = body.rstrip("\r\n")
    if draw(st.booleans()):  # one character more anywhere: may break the check
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.sampled_from(['"', "a", delimiter, "\n"])) + body[at:]
        return body, delimiter, None
    return body, delimiter, len(rows)


@settings(
    max_examples=SCALE or 200,
    derandomize=SCALE is None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=bodies())
# Quotes inside unquoted cells (`a"`) around a quoted cell that starts with a line break:
# counted as quotes that open and close, they would put a cut inside that cell. Second: the
# same where a range of the scan starts inside a quoted cell (after an odd count).
@example(case=('a,a\na",a\n"\na",a\na",a\n', ",", None))
@example(case=('"\n\n\n\n\n\n",a\n"\n\n\n\n\n\n",a\na"a,a\n"\na",a\na",a\n', ",", None))
def test_cuts_are_row_ends_as_arrow_reads_the_file(tmp_path, case):
    body, delimiter, rows = case
    data = HEADER.replace(b",", delimiter.encode()) + body.encode()
    path = tmp_path / "c.csv"
    path.write_bytes(data)
    start = len(HEADER)
    whole = _arrow(data[start:], delimiter)
    # A range, and so a cut, at every byte: each line break the quote count calls a row's
    # end becomes a cut; and a few ranges of many quotes, in blocks of three bytes or whole.
    for parts, block in [(max(len(body), 2), 3), (2, 3), (3, 1 << 20)]:
        with mock.patch.object(csv_cuts, "SCAN_BYTES", block):
            quoted, cuts = csv_cuts.plan(path, start, delimiter, parts)
        assert quoted == ('"' in body)
        assert cuts[0] == start and cuts[-1] == len(data)
        assert all(a < b for a, b in zip(cuts[:-2], cuts[1:-1], strict=True))
        for at in cuts[1:-1]:  # just past a line break, never between `\r` and `\n`
            assert data[at - 1 : at] in (b"\n", b"\r") and data[at - 1 : at + 1] != b"\r\n"
        got = [_arrow(data[a:b], delimiter) for a, b in zip(cuts, cuts[1:], strict=False)]
        if whole == "error":
            assert "error" in got
        else:
            assert "error" not in got and [row for part in got for row in part] == whole
        if rows is not None and rows > 1 and parts > 3:  # a well-formed file passes: cut
            assert len(cuts) > 2


@pytest.mark.parametrize(
    ("body", "cut"),
    [
        ('"a""b",c\n"x\ny",""\n1,2\n', True),  # doubled quotes, a line break in a cell
        ('"",""\r\n"a\r\nb",c\r\n1,2\r\n', True),  # empty quoted cells, `\r\n` endings
        ('ab"c,1\n"x\ny",2\n1,2\n', False),  # a quote inside an unquoted cell
        ('"ab"x,1\n"x\ny",2\n1,2\n', False),  # text after a closing quote
        ('a,1\n"x\ny,2\n1,2\n', False),  # a quote never closed: one reader, Arrow's reading
    ],
)
def test_a_quoted_file_is_cut_only_where_the_quote_check_holds(tmp_path, body, cut):
    path = tmp_path / "q.csv"
    path.write_bytes(HEADER + body.encode())
    with mock.patch.object(csv_cuts, "SCAN_BYTES", 4):
        quoted, cuts = csv_cuts.plan(path, len(HEADER), ",", len(body))
    assert quoted and (len(cuts) > 2) == cut


def _quoted(path, last: str = "") -> int:
    """A file with quoted cells (some holding line breaks) from its first line on; returns
    where its body starts."""
    lines = ["x,s,label"]
    for i in range(300):
        text = f'"line {i}\nwith ""quotes"", and a comma"' if i % 7 == 0 else f'"t{i % 4}"'
        lines.append(f"{i * 0.5},{text},{i % 3}")
    path.write_text("\n".join([*lines, last] if last else lines) + "\n")
    return len(lines[0]) + 1


def _read(path) -> tuple:
    table = csvfile.read_csv(path, ",", (), text={"s"}, numbers={"x"})
    found = table.floats("x", csvfile.DEFAULT_MISSING)
    return len(table), None if found is None else found.tolist(), table.column("s"), table.raw


def _parts(monkeypatch, count: int, delay: float = 0.0) -> None:
    monkeypatch.setattr(arrow_stream, "PART_BYTES", 1)
    monkeypatch.setattr(arrow_stream, "cores", lambda: count)
    monkeypatch.setattr(arrow_text, "BLOCK_SIZE", 512)
    monkeypatch.setattr(csv_cuts, "SCAN_BYTES", 1000)
    plan = csv_cuts.plan

    def slow(*args):  # the first part then waits at its bound for the scan
        time.sleep(delay)
        return plan(*args)

    monkeypatch.setattr(csv_cuts, "plan", slow)


@pytest.mark.parametrize("delay", [0.0, 0.3])
def test_a_quoted_file_read_in_parts_is_read_as_a_whole(tmp_path, monkeypatch, delay):
    path = tmp_path / "q.csv"
    start = _quoted(path)
    whole = _read(path)
    _parts(monkeypatch, 3, delay)
    # The scan runs beside the first part, which it makes longer: really cut, in three parts.
    quoted, cuts = csv_cuts.plan(path, start, ",", 3, csv_cuts.FIRST_MORE)
    assert quoted and len(cuts) == 4 and cuts != arrow_stream.cuts(path, start)[1]
    got = _read(path)
    assert got[:3] == whole[:3] and got[3].cuts == cuts
    assert whole[0] == 300 and whole[2][7] == 'line 7\nwith "quotes", and a comma'
    np.testing.assert_array_equal(whole[1], np.arange(300) * 0.5)


@pytest.mark.parametrize(
    "last",
    [
        '1.5,ab"c,0',  # a quote in an unquoted cell: one reader, from the first part on
        'oops,"t",0',  # not a number, in the last part: found as one reader finds it
        '1,"t"',  # a ragged row, in the last part
    ],
)
def test_a_quoted_file_fails_or_falls_back_as_one_reader(tmp_path, monkeypatch, last):
    path = tmp_path / "q.csv"
    _quoted(path, last)

    def outcome():
        try:
            return _read(path)[:3]
        except DataError as exc:
            return [p.message for p in exc.problems]

    whole = outcome()
    _parts(monkeypatch, 3, 0.1)
    assert outcome() == whole
