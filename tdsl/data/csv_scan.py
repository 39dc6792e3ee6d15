"""The csv module's reading of a file, for what Arrow does not keep: the byte offset where
the rows start, the line a row starts on, and what is wrong with a file Arrow refused."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

from tdsl.data.base import DataError
from tdsl.errors import SpecPath

_BOM = b"\xef\xbb\xbf"


class Records:
    """(first line, cells) of each non-blank record after `skip` lines, read by the csv
    module from the file's bytes, so the byte offset where the rows start is known."""

    def __init__(self, path: Path, delimiter: str, skip: int):
        self.handle = path.open("rb")
        self.delimiter, self.skip = delimiter, skip
        self.starts: list[int] = []  # byte offset of each line read so far (the header's)

    def _lines(self) -> Iterator[str]:
        first = True
        while True:
            start = self.handle.tell()
            raw = self.handle.readline()
            if not raw:
                return
            if first and raw.startswith(_BOM):
                raw, start = raw[len(_BOM) :], start + len(_BOM)
            first = False
            self.starts.append(start)
            yield raw.decode("utf-8")

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        reader = csv.reader(self._lines(), delimiter=self.delimiter)
        line = reader.line_num + 1
        for row in reader:
            if reader.line_num > self.skip and row:  # blank lines are skipped
                yield line, row
            line = reader.line_num + 1

    def body_start(self, line: int, header: bool) -> int:
        """Where the rows start: after the header record, or at the first record."""
        return self.handle.tell() if header else self.starts[line - 1]

    def close(self) -> None:
        self.handle.close()


def rows_of(records: Records, header: bool) -> Iterator[tuple[int, list]]:
    rows = iter(records)
    if header:
        next(rows, None)
    return rows


def located(raw: Any, where: SpecPath, message: str) -> DataError:
    """Arrow's error as the csv module's reading would have put it."""
    path = raw.path
    if "UTF8" in message or "UTF-8" in message:
        return DataError.at(where, f"{path} is not UTF-8 text")
    try:
        with closing(Records(path, raw.delimiter, raw.layout.skip_rows)) as records:
            ragged = [
                (line, len(row))
                for line, row in rows_of(records, raw.layout.header)
                if len(row) != raw.width
            ]
    except UnicodeDecodeError:
        return DataError.at(where, f"{path} is not UTF-8 text")
    except csv.Error as exc:
        return DataError.at(where, f"{path} is not a readable CSV file: {exc}")
    if ragged:
        line, count = ragged[0]
        more = f" ({len(ragged) - 1} more rows like it)" if len(ragged) > 1 else ""
        return DataError.at(
            where,
            f"line {line} of {path} has {count} cells, the header has {raw.width}{more}",
            f"check the delimiter ({raw.delimiter!r}) and quoting",
        )
    return DataError.at(where, f"{path} is not a readable CSV file: {message.splitlines()[0]}")
