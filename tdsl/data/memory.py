"""Refusing data that would not fit in memory, with the figures, before reading it: the
system would otherwise kill the process part way."""

from __future__ import annotations

import os
import re
from pathlib import Path

from tdsl.data.base import DataError
from tdsl.errors import SpecPath

# Peak memory of reading a CSV and making its features, per byte of file: Arrow's columns
# (about 0.8 per byte for short numbers) and the features as they are made: 1.14 measured
# with bench/tables.py (besides the ~240 MB of Python, torch and pyarrow themselves).
MEMORY_PER_BYTE = 1.5


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


def refuse_too_large(path: Path, where: SpecPath) -> None:
    """Refuse a file whose reading would not fit in memory, before the system kills us."""
    try:
        length = path.stat().st_size
    except OSError:
        return
    refuse_unless_fits(
        where,
        f"{path} ({size(length)})",
        int(length * MEMORY_PER_BYTE),
        available_memory(),
        "free memory, or give the rows as a folder of .npy files (kind: tensors), "
        "which are read batch by batch",
    )
