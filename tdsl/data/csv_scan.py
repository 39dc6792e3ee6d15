"""The csv module's reading of a file, for what Arrow does not keep: the byte offset where
the rows start, the line a row starts on, and what is wrong with a file Arrow refused."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any, BinaryIO

from tdsl.data.base import DataError
from tdsl.errors import SpecPath

_BOM = b"\xef\xbb\xbf"


class Records:
    """(first line, cells) of each non-blank record after `skip` lines, read by the csv
    module from the file's bytes, so the byte offset where the rows start is known. A line
    ends at `\n`, `\r\n` or a bare `\r` (old Mac files), as Arrow and the csv module take
    them, whatever mix a file has."""

    def __init__(self, path: Path, delimiter: str, skip: int):
        self.handle = path.open("rb")
        self.delimiter, self.skip = delimiter, skip
        self.starts: list[int] = []  # byte offset of each line read so far (the header's)
        self.end = 0  # byte offset just past the last line read

    def _lines(self) -> Iterator[str]:
        for start, raw in _byte_lines(self.handle):
            if start == 0 and raw.startswith(_BOM):
                raw, start = raw[len(_BOM) :], start + len(_BOM)
            self.starts.append(start)
            self.end = start + len(raw)
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
        return self.end if header else self.starts[line - 1]

    def close(self) -> None:
        self.handle.close()


def _byte_lines(handle: BinaryIO, chunk: int = 1 << 20) -> Iterator[tuple[int, bytes]]:
    """(byte offset, line with its line break) of each line, read a chunk at a time:
    `readline` would only end lines at `\n`, and read a file of bare `\r` whole."""
    at, rest = 0, b""
    while True:
        block = handle.read(chunk)
        lines = (rest + block).splitlines(keepends=True)  # bytes: \n, \r\n and \r only
        # The last line may go on in the next chunk (a `\r` may be half of a `\r\n`).
        rest = lines.pop() if block and lines else b""
        for line in lines:
            yield at, line
            at += len(line)
        if not block:
            if rest:
                yield at, rest
            return


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
