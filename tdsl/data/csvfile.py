"""Reading CSV files: a header and typed columns, with every problem located by line.

Shared by the table and time-series sources. The header (and the lines before it) are read
with Python's csv module; the rows with Apache Arrow's multithreaded CSV reader, which
parses number columns straight into float64 buffers, so a large file costs about its
numbers in memory, not a Python string per cell. Arrow is only the fast path: a column
Arrow cannot parse as numbers (or one with a non-finite value) is read as text and checked
cell by cell as before, and a line number is found by re-reading the file with the csv
module, so every message says what it always said.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Collection, Sequence
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import numpy as np

from tdsl.data import gather
from tdsl.data.base import DataError, Problems
from tdsl.data.csv_scan import Records
from tdsl.errors import SpecPath
from tdsl.special_files import require_regular_file
from tdsl.wording import did_you_mean, file_reason

if TYPE_CHECKING:  # pyarrow is imported when a table is read, not by every validate
    from tdsl.data.arrow_text import RawTable

DEFAULT_MISSING = frozenset({"", "NA", "NaN", "nan"})


@attrs.frozen
class Layout:
    """How a file's lines are laid out: `skip_rows` lines before anything else, then a header
    line (or none), and the names to use instead of the header's (or, without a header, of
    the columns; default: their positions 0, 1, ...)."""

    skip_rows: int = 0
    header: bool = True
    names: tuple[str, ...] = ()


class CsvTable:
    """A file's header and columns, or a subset of its rows (`rows`: their ids in the file)."""

    def __init__(
        self,
        raw: RawTable,
        header: tuple[str, ...],
        rows: np.ndarray | None = None,
        codes: dict | None = None,
    ):
        self.raw, self.header, self.rows = raw, header, rows
        self.path = raw.path
        # A text column's codes, made once and shared with the subsets: fitting, checking
        # and transforming each ask for them.
        self._codes: dict[str, tuple[np.ndarray, list[str]]] = {} if codes is None else codes

    @classmethod
    def header_only(cls, path: Path, header: tuple[str, ...]) -> CsvTable:
        """A table of no rows: what column checks need."""
        table = cls.__new__(cls)
        table.raw, table.header, table.rows, table.path = None, header, None, path
        table._codes = {}
        return table

    def __len__(self) -> int:
        return self.raw.num_rows if self.rows is None else len(self.rows)

    def _at(self, name: str) -> int:
        return self.header.index(name)

    def _pick(self, values):
        if self.rows is None:
            return values
        if isinstance(values, list):
            return [values[i] for i in self.rows]
        return gather.take(values, self.rows)  # on every core

    def column(self, name: str) -> list[str]:
        """The column's cells as text (the slow path: a Python string per cell)."""
        return self._pick(self.raw.text(self._at(name)))

    def floats(self, name: str, missing: frozenset[str]) -> np.ndarray | None:
        """The column as float64, NaN where missing, when Arrow read it as finite numbers
        with these missing markers; None when it must be read cell by cell."""
        values = self.raw.floats(self._at(name), missing)
        return None if values is None else self._pick(values)

    def codes(self, name: str) -> tuple[np.ndarray, list[str]]:
        """The column as indices into its distinct texts, and those texts."""
        if name not in self._codes:
            self._codes[name] = self.raw.codes(self._at(name))
        codes, uniques = self._codes[name]
        return self._pick(codes), uniques

    def absent(self, name: str, missing: frozenset[str]) -> np.ndarray:
        """Per row: is the cell missing (its stripped text is one of `missing`)."""
        values = self.floats(name, missing)
        if values is not None:
            return np.isnan(values)
        codes, uniques = self.codes(name)
        gone = np.array([u.strip() in missing for u in uniques], dtype=bool)
        return gone[codes] if len(uniques) else np.zeros(len(codes), dtype=bool)

    def where(self, row: int) -> str:
        return self.raw.where(row if self.rows is None else int(self.rows[row]))

    def subset(self, keep: Sequence[int] | np.ndarray) -> CsvTable:
        keep = np.asarray(keep, dtype=np.int64)
        rows = keep if self.rows is None else self.rows[keep]
        return CsvTable(self.raw, self.header, rows, self._codes)

    def forget(self, name: str) -> None:
        """Let go of one column read so far."""
        self._codes.pop(name, None)
        self.raw.forget(self._at(name))

    def release(self) -> None:
        """Let go of the columns read so far (their memory goes back at once)."""
        self._codes.clear()
        self.raw.release()


def read_csv(
    path: Path,
    delimiter: str,
    where: SpecPath,
    need_rows: bool = True,
    layout: Layout = Layout(),
    missing: frozenset[str] = DEFAULT_MISSING,
    text: Collection[str] | bool = (),
    wanted: Collection[str] | None = None,
    numbers: Collection[str] = (),
) -> CsvTable:
    """The file's header and columns (`wanted` ones only, when given; `text` ones, or all
    with True, as text; `numbers` ones as float64 where every cell is one); raises
    `DataError` for an unreadable file, ragged rows, or (with `need_rows`: data to train on,
    not rows to predict) a header and no rows."""
    if len(delimiter) != 1:
        raise DataError.at(("delimiter",), f"must be one character (got {delimiter!r})")
    skipped = f" after skipping {layout.skip_rows} lines" if layout.skip_rows else ""
    try:
        require_regular_file(path)  # a FIFO would block the read forever
        with closing(Records(path, delimiter, layout.skip_rows)) as records:
            first = next(iter(records), None)
            if first is None:
                needs = "; a CSV file needs a header line" if layout.header else ""
                raise DataError.at(where, f"{path} is empty{skipped}{needs}")
            start = records.body_start(first[0], layout.header)
        header = tuple(cell.strip() for cell in first[1])
        if not layout.header:  # the columns are named by position
            header = tuple(str(i) for i in range(len(first[1])))
    except UnicodeDecodeError:
        raise DataError.at(where, f"{path} is not UTF-8 text") from None
    except csv.Error as exc:
        raise DataError.at(
            where,
            f"{path} is not a readable CSV file: {file_reason(exc)}",
        ) from None
    except OSError as exc:
        raise DataError.at(where, f"cannot read {path}: {exc.strerror or exc}") from None
    if layout.names:
        if len(layout.names) != len(header):
            raise DataError.at(
                ("names",),
                f"{len(layout.names)} names for the {len(header)} columns of {path}",
            )
        header = layout.names
    positions = None
    if wanted is not None:
        positions = sorted({header.index(n) for n in wanted if n in header})
    as_text = (
        set(range(len(header)))
        if text is True
        else {header.index(n) for n in text or () if n in header}  # type: ignore[union-attr]
    )
    from tdsl.data.arrow_text import read_body  # pyarrow: only when a table is read

    raw = read_body(path, delimiter, where, start, len(header), layout, missing, as_text, positions)
    if need_rows and raw.num_rows == 0:
        raise DataError.at(where, f"the CSV {path} has a header and no rows{skipped}")
    return CsvTable(raw, header)


def find_columns(
    table: CsvTable, names: Sequence[tuple[SpecPath, str]], problems: Problems
) -> bool:
    """Report each (path, name) whose column the header lacks; True when all exist."""
    ok = True
    for path, name in names:
        if name not in table.header:
            hint = did_you_mean(name, table.header)
            problems.add(path, f"no column {name!r} in {table.path}", hint)
            ok = False
    return ok


def is_missing(cell: str, missing: frozenset[str]) -> bool:
    return cell.strip() in missing


def numbers(
    table: CsvTable,
    name: str,
    where: SpecPath,
    missing: frozenset[str],
    problems: Problems,
    hint: str | None = None,
) -> np.ndarray:
    """The column as float64, NaN where missing; cells that are not numbers are problems."""
    fast = table.floats(name, missing)
    if fast is not None:
        return fast
    cells = table.column(name)
    values = np.full(len(table), math.nan)
    bad: list[int] = []
    for row, cell in enumerate(cells):
        text = cell.strip()
        if text in missing:
            continue
        try:
            values[row] = float(text)
        except ValueError:
            bad.append(row)
            continue
        if not math.isfinite(values[row]):
            bad.append(row)
    if bad:
        first = bad[0]
        more = f" ({len(bad) - 1} more cells like it)" if len(bad) > 1 else ""
        problems.add(
            where,
            f"column {name!r}: {table.where(first)} has {cells[first]!r}, not a number{more}",
            hint,
        )
    return values


def first_missing(values: np.ndarray) -> int | None:
    found = np.flatnonzero(np.isnan(values))
    return int(found[0]) if len(found) else None
