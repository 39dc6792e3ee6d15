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


def refuse_too_large(path: Path, where: SpecPath) -> None:
    """Refuse a file whose reading would not fit in memory, before the system kills us."""
    free = available_memory()
    try:
        need = int(path.stat().st_size * MEMORY_PER_BYTE)
    except OSError:
        return
    if free is not None and need > free:
        gb = 10**9
        raise DataError.at(
            where,
            f"{path} ({path.stat().st_size / gb:.1f} GB) needs about {need / gb:.1f} GB of "
            f"memory to read, and {free / gb:.1f} GB is available",
            "free memory, or give the rows as a folder of .npy files (kind: tensors), "
            "which are read batch by batch",
        )
