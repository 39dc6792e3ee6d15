"""Reading CSV files: a header and rows of text cells, with every problem located by line.

Shared by the table and time-series sources. Numbers are parsed per column, so a cell that
is not a number is reported with its column, line and text.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import attrs
import numpy as np

from tdsl.data.base import DataError, Problems
from tdsl.errors import SpecPath, did_you_mean, file_reason, require_regular_file


@attrs.frozen
class CsvTable:
    path: Path
    header: tuple[str, ...]
    rows: list[list[str]]
    lines: list[int]  # the file line each row starts on

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> list[str]:
        at = self.header.index(name)
        return [row[at] for row in self.rows]

    def where(self, row: int) -> str:
        return f"line {self.lines[row]} of {self.path}"

    def subset(self, keep: Sequence[int]) -> CsvTable:
        return CsvTable(
            self.path, self.header, [self.rows[i] for i in keep], [self.lines[i] for i in keep]
        )


@attrs.frozen
class Layout:
    """How a file's lines are laid out: `skip_rows` lines before anything else, then a header
    line (or none), and the names to use instead of the header's (or, without a header, of
    the columns; default: their positions 0, 1, ...)."""

    skip_rows: int = 0
    header: bool = True
    names: tuple[str, ...] = ()


def read_csv(
    path: Path,
    delimiter: str,
    where: SpecPath,
    need_rows: bool = True,
    layout: Layout = Layout(),
) -> CsvTable:
    """The file's header and rows; raises `DataError` for an unreadable file, ragged rows,
    or (with `need_rows`: data to train on, not rows to predict) a header and no rows."""
    if len(delimiter) != 1:
        raise DataError.at(("delimiter",), f"must be one character (got {delimiter!r})")
    try:
        require_regular_file(path)  # a FIFO would block the read forever
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            records = []
            line = reader.line_num + 1
            for row in reader:
                if reader.line_num > layout.skip_rows and row:  # blank lines are skipped
                    records.append((line, row))
                line = reader.line_num + 1
    except UnicodeDecodeError:
        raise DataError.at(where, f"{path} is not UTF-8 text") from None
    except csv.Error as exc:
        raise DataError.at(
            where,
            f"{path} is not a readable CSV file: {file_reason(exc)}",
        ) from None
    except OSError as exc:
        raise DataError.at(where, f"cannot read {path}: {exc.strerror or exc}") from None
    skipped = f" after skipping {layout.skip_rows} lines" if layout.skip_rows else ""
    if not records:
        needs = "; a CSV file needs a header line" if layout.header else ""
        raise DataError.at(where, f"{path} is empty{skipped}{needs}")
    if not layout.header:  # the columns are named by position
        records.insert(0, (0, [str(i) for i in range(len(records[0][1]))]))
    if need_rows and len(records) == 1:
        raise DataError.at(where, f"the CSV {path} has a header and no rows{skipped}")
    header = tuple(cell.strip() for cell in records[0][1])
    if layout.names:
        if len(layout.names) != len(header):
            raise DataError.at(
                ("names",),
                f"{len(layout.names)} names for the {len(header)} columns of {path}",
            )
        header = layout.names
    ragged = [(line, len(row)) for line, row in records[1:] if len(row) != len(header)]
    if ragged:
        line, count = ragged[0]
        more = f" ({len(ragged) - 1} more rows like it)" if len(ragged) > 1 else ""
        raise DataError.at(
            where,
            f"line {line} of {path} has {count} cells, the header has {len(header)}{more}",
            f"check the delimiter ({delimiter!r}) and quoting",
        )
    return CsvTable(path, header, [row for _, row in records[1:]], [ln for ln, _ in records[1:]])


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
    values = np.full(len(table), math.nan)
    bad: list[int] = []
    for row, cell in enumerate(table.column(name)):
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
        cell = table.column(name)[first]
        problems.add(
            where,
            f"column {name!r}: {table.where(first)} has {cell!r}, not a number{more}",
            hint,
        )
    return values


def first_missing(values: np.ndarray) -> int | None:
    found = np.flatnonzero(np.isnan(values))
    return int(found[0]) if len(found) else None
