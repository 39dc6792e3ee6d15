"""Refusing data that would not fit in memory, with the figures, before reading it: the
system would otherwise kill the process part way."""

from __future__ import annotations

from pathlib import Path

from tdsl.data.base import DataError
from tdsl.errors import SpecPath

# Peak memory of reading a CSV and making its features, per byte of file: Arrow's columns
# (about 0.8 per byte for short numbers) and the features as they are made: 1.14 measured
# with bench/tables.py (besides the ~240 MB of Python, torch and pyarrow themselves).
MEMORY_PER_BYTE = 1.5


def available_memory() -> int | None:
    """Bytes this machine can still give without swapping (MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


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
