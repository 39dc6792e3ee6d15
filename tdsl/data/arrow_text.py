"""The rows of a CSV file through Apache Arrow, and the csv-module scans that locate them.

Arrow reads the body (everything after the header) in parallel blocks: number columns
(integers too) are copied into float64 numpy arrays batch by batch, other columns kept as
Arrow string arrays; no Python object is made per cell. Line numbers are not kept (a file
of millions of rows would pay for them whether or not anything is wrong): `RawTable.line`
finds a row's line by reading the file again with the csv module, which only happens to say
where a problem is.
"""

from __future__ import annotations

import math
import re
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from tdsl.data.arrow_stream import (  # noqa: F401 (compact: for parquet)
    NUMBERS,
    compact,
    prepare,
    stream,
)
from tdsl.data.base import DataError
from tdsl.data.csv_scan import Records, located, rows_of
from tdsl.data.memory import refuse_too_large
from tdsl.errors import SpecPath

_NUMBERS = NUMBERS
BLOCK_SIZE = 1 << 20  # bytes Arrow parses at a time; a column's type is guessed from the first


def codes_of(column: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """A text column as indices into its distinct texts (in order of first use), and those
    texts."""
    uniques = pc.unique(column)
    # int32, as Arrow makes them (half the memory of int64), a chunk at a time into one
    # array: the whole column's codes are never held twice.
    codes = np.empty(len(column), dtype=np.int32)
    at = 0
    for chunk in column.chunks:
        codes[at : at + len(chunk)] = pc.index_in(chunk, value_set=uniques).to_numpy()
        at += len(chunk)
    return codes, uniques.to_pylist()


class RawTable:
    """The columns Arrow read (by position), converted on demand and cached."""

    def __init__(self, path: Path, delimiter: str, layout: Any, start: int, width: int):
        self.path, self.delimiter, self.layout, self.start = path, delimiter, layout, start
        self.width = width  # the number of columns
        self.missing: frozenset[str] = frozenset()
        self.quoted = True  # may a quoted cell hold a line break
        self.cuts: list[int] = []  # where the parts read in parallel start, and the end
        self.scan: Any = None  # the quote scan, while it runs beside the first part
        self.num_rows = 0
        # float64 columns as numpy (NaN where missing), the others as Arrow arrays
        self.arrays: dict[int, Any] = {}
        self.unclean: set[int] = set()  # float64 columns with a 'nan' or 'inf' written out
        self._floats: dict[int, np.ndarray | None] = {}
        self._texts: dict[int, pa.ChunkedArray] = {}
        self._lines: dict[int, int] = {}

    def load(self, num_rows: int, arrays: dict[int, Any], unclean: set[int]) -> None:
        self.num_rows, self.arrays, self.unclean = num_rows, arrays, unclean

    def floats(self, at: int, missing: frozenset[str]) -> np.ndarray | None:
        if missing != self.missing:
            return None
        column = self.arrays[at]
        if isinstance(column, np.ndarray):  # no copy: the numbers as they were read
            return None if at in self.unclean else column
        # Other columns are not cached: holding float64 copies beside Arrow's would double
        # the memory, and a copy out of Arrow's buffers is quick.
        if at not in self._floats:
            found = _as_floats(column)
            if found is None:
                self._floats[at] = None
            return found
        return None

    def _text(self, at: int) -> pa.ChunkedArray:
        column = self.arrays[at]
        if isinstance(column, pa.ChunkedArray) and column.type == pa.string():
            return column
        if at not in self._texts:  # read as numbers: read it again as text
            self._texts[at] = _read(self, {at}, as_text={at})[1][at]
        return self._texts[at]

    def text(self, at: int) -> list[str]:
        return self._text(at).to_pylist()

    def codes(self, at: int) -> tuple[np.ndarray, list[str]]:
        return codes_of(self._text(at))

    def where(self, row: int) -> str:
        return f"line {self.line(row)} of {self.path}"

    def line(self, row: int) -> int:
        if row not in self._lines:
            lay = self.layout
            with closing(Records(self.path, self.delimiter, lay.skip_rows)) as records:
                for number, (line, _) in enumerate(rows_of(records, lay.header)):
                    if number == row:
                        self._lines[row] = line
                        break
        return self._lines.get(row, 0)

    def forget(self, at: int) -> None:
        for cache in (self.arrays, self._floats, self._texts):
            cache.pop(at, None)
        pa.default_memory_pool().release_unused()  # back to the system, for the features

    def release(self) -> None:
        self.arrays, self._floats, self._texts = {}, {}, {}


def _as_floats(column: pa.ChunkedArray) -> np.ndarray | None:
    """float64 with NaN for nulls; None unless every present value is a finite number."""
    if column.type == pa.null():
        return np.full(len(column), math.nan)
    if column.type not in _NUMBERS:
        return None
    out = np.empty(len(column), dtype=np.float64)
    at = 0
    for chunk in column.chunks:  # chunk by chunk: no second copy of the whole column
        out[at : at + len(chunk)] = chunk.to_numpy(zero_copy_only=False)
        at += len(chunk)
    if column.type == pa.float64():
        nans = int(np.isnan(out).sum())
        if nans != column.null_count or np.isinf(out).any():
            return None  # 'nan' or 'inf' written as a value: reported cell by cell
    return out


def _options(
    raw: RawTable, names: list[str], include: list[str], as_text: set[int], as_numbers: set[int]
):
    read = pacsv.ReadOptions(column_names=names, use_threads=True, block_size=BLOCK_SIZE)
    parse = pacsv.ParseOptions(
        delimiter=raw.delimiter, newlines_in_values=raw.quoted, ignore_empty_lines=True
    )
    convert = pacsv.ConvertOptions(
        column_types={
            **{str(i): pa.float64() for i in as_numbers},
            **{str(i): pa.string() for i in as_text},
        },
        include_columns=include,
        null_values=sorted(raw.missing),
        strings_can_be_null=False,
        quoted_strings_can_be_null=True,
        # Only numbers and text: booleans, dates and times are text here, as before.
        true_values=["\x00true"],
        false_values=["\x00false"],
        timestamp_parsers=["\x00"],
    )
    return read, parse, convert


_FAILED_COLUMN = re.compile(r"In CSV column #(\d+): .*CSV conversion error to (\w+)")


def _read(raw: RawTable, positions, as_text: set[int], as_numbers: set[int] = frozenset()):
    """The columns at `positions` (None: all): `as_numbers` as float64, `as_text` as text,
    others as the first block suggests; a column with a cell its type cannot hold is read
    again (an integer column as float64, any other as text)."""
    names = [str(i) for i in range(raw.width)]
    include = names if positions is None else [str(i) for i in sorted(positions)]
    as_numbers = set(as_numbers) - set(as_text)
    while True:
        read, parse, convert = _options(raw, names, include, as_text, as_numbers)
        try:
            return stream(raw, read, parse, convert)
        except pa.ArrowInvalid as exc:
            failed = _FAILED_COLUMN.search(str(exc))
            if failed is None or int(failed.group(1)) in as_text:
                raise
            at = int(failed.group(1))
            if failed.group(2) in ("int64", "null") and at not in as_numbers:
                as_numbers.add(at)
            else:
                as_numbers.discard(at)
                as_text = {*as_text, at}


def read_body(
    path: Path,
    delimiter: str,
    where: SpecPath,
    start: int,
    width: int,
    layout: Any,
    missing: frozenset[str],
    as_text: set[int],
    positions: list[int] | None,
    as_numbers: set[int] = frozenset(),
) -> RawTable:
    read = width if positions is None else len(positions)
    texts = len(as_text) if positions is None else len(set(as_text) & set(positions))
    refuse_too_large(path, where, start, read - texts, texts)
    raw = RawTable(path, delimiter, layout, start, width)
    raw.missing = missing
    try:
        prepare(raw)
        rows, arrays, unclean = _read(raw, positions, as_text, as_numbers)
        other = [
            at
            for at, column in arrays.items()
            if isinstance(column, pa.ChunkedArray)
            and column.type not in (*_NUMBERS, pa.string(), pa.null())
        ]
        if any(arrays[at].type == pa.binary() for at in other):
            raise DataError.at(where, f"{path} is not UTF-8 text")
        if other:  # dates and the like: read those columns again, as text
            arrays.update(_read(raw, other, set(other))[1])
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" not in str(exc):
            raise located(raw, where, str(exc)) from None
        # A header and no rows: columns of no cells.
        kept = range(width) if positions is None else positions
        rows, arrays, unclean = 0, {i: pa.chunked_array([], pa.string()) for i in kept}, set()
    except OSError as exc:
        raise DataError.at(where, f"cannot read {path}: {exc.strerror or exc}") from None
    raw.load(rows, arrays, unclean)
    return raw
