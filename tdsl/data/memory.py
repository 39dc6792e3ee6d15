"""Refusing data that would not fit in memory, with the figures, before reading it: the
system would otherwise kill the process part way."""

from __future__ import annotations

import os
import re
from pathlib import Path

from tdsl.data.base import DataError
from tdsl.errors import SpecPath

# Peak memory of reading a CSV and making its features (besides the ~270 MB of Python, torch
# and pyarrow themselves), measured with 0.5-4 M rows of 5 columns: ~10-11 bytes per number
# cell read, whatever its length in the file (a float64 column, a float32 feature, the
# target), and ~24 per one-hot cell of a few categories (its text, codes and features).
# Counted per cell, a file of 1-character numbers (2 bytes a cell) is not underestimated 5x
# as a figure per byte of file was; with a margin, as a refusal must not be optimistic.
BYTES_PER_NUMBER = 16
BYTES_PER_TEXT = 40
BYTES_PER_FILE_BYTE = 0.25  # Arrow's parse buffers and what it holds of the text
SAMPLE_BYTES = 1 << 20  # read to count the rows: the first block Arrow reads anyway


# A cap on the memory data may take (bytes, or with K/M/G: `200M`): below what the machine
# has, to share it with other work, or to try large-data paths on small files.
LIMIT_VARIABLE = "TDSL_MEMORY_LIMIT"
_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def memory_limit() -> int | None:
    """`TDSL_MEMORY_LIMIT` in bytes (None: unset); raises `DataError` for an unreadable one."""
    text = os.environ.get(LIMIT_VARIABLE, "").strip()
    if not text:
        return None
    found = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)B?", text.upper())
    if found is None:
        raise DataError.at(
            (), f"{LIMIT_VARIABLE}={text!r} is not a size", "bytes, or with K, M, G: 200M"
        )
    return int(float(found[1]) * _UNITS[found[2]])


def available_memory() -> int | None:
    """Bytes this machine can still give without swapping (MemAvailable), capped by
    `TDSL_MEMORY_LIMIT`; None if neither is known."""
    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    limit = memory_limit()
    return limit if free is None else free if limit is None else min(free, limit)


def size(count: int) -> str:
    """Bytes as a reader takes them in: 3.2 KB, 410 MB, 2.5 GB."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if count >= scale:
            digits = 1 if count < 100 * scale else 0
            return f"{count / scale:,.{digits}f} {unit}"
    return f"{count} bytes"


def refuse_unless_fits(
    where: SpecPath, subject: str, need: int, free: int | None, hint: str
) -> None:
    """Refuse reading `subject` when its estimated `need` exceeds the `free` memory, with
    both figures, before the system kills the process."""
    if free is not None and need > free:
        raise DataError.at(
            where,
            f"{subject} needs about {size(need)} of memory to read, and {size(free)} is available",
            hint,
        )


def csv_rows(path: Path, start: int, length: int) -> int:
    """About how many rows the file has after byte `start`: its line breaks (`\n`,
    `\r\n` or a bare `\r`) in the first `SAMPLE_BYTES`, scaled to its length. Blank lines
    and line breaks inside quotes count too: an estimate above, never below."""
    with path.open("rb") as handle:
        handle.seek(start)
        sample = handle.read(SAMPLE_BYTES)
    breaks = sample.count(b"\n") + sample.count(b"\r") - sample.count(b"\r\n")
    if start + len(sample) >= length:  # the whole body: the count itself
        return breaks + bool(sample and not sample.endswith((b"\n", b"\r")))
    return -(-(length - start) * max(breaks, 1) // len(sample))


def refuse_too_large(
    path: Path, where: SpecPath, start: int = 0, numbers: int = 1, texts: int = 0
) -> None:
    """Refuse a CSV file whose reading would not fit in memory, before the system kills us:
    its rows (counted in its first block) times the `numbers` and `texts` columns read."""
    try:
        length = path.stat().st_size
        rows = csv_rows(path, start, length)
    except OSError:
        return
    need = rows * (numbers * BYTES_PER_NUMBER + texts * BYTES_PER_TEXT)
    columns = numbers + texts
    refuse_unless_fits(
        where,
        f"{path} ({size(length)}, about {rows:,} rows of {columns} "
        f"column{'s' if columns != 1 else ''} to read)",
        need + int(length * BYTES_PER_FILE_BYTE),
        available_memory(),
        "free memory, read fewer columns, or give the rows as a folder of .npy files "
        "(kind: tensors), which are read batch by batch",
    )
