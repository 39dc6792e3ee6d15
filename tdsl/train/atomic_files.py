"""Atomic file writes: a reader (or a resumed run) sees the old file or the new one, never
half of one — temp file in the same directory, fsync, rename."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tdsl.errors import TdslError


class FileWriteError(TdslError):
    """A run file could not be written (disk full, permissions); nothing half-written is left."""


@contextlib.contextmanager
def atomic_file(path: Path, mode: int = 0o666) -> Iterator[Path]:
    """A temporary file beside `path` to write; when the block ends it is synced and renamed
    to `path` (the rename synced too), or removed if the block raised. The file gets `mode`
    less the umask."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(prefix=_prefix(path.name), dir=path.parent)
    except OSError as exc:
        raise FileWriteError(f"cannot write {path}: {exc.strerror or exc}") from None
    temporary = Path(name)
    try:
        # mkstemp makes the file 0600; a run folder is meant to be shared like any other
        # file the user writes, so give it the usual 0666 less the umask.
        os.fchmod(descriptor, mode & ~_umask())
        os.close(descriptor)
        yield temporary
        with open(temporary, "rb+") as done:
            os.fsync(done.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise FileWriteError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_file(path) as temporary:
        temporary.write_bytes(data)


def _prefix(name: str) -> str:
    return f".{name}."


# mkstemp appends 8 characters of this alphabet to the prefix (CPython's _RandomNameSequence).
_RANDOM_PART = re.compile(r"[a-z0-9_]{8}")


def is_temporary_of(candidate: str, name: str) -> bool:
    """Whether the file name `candidate` is an atomic write's temporary file for `name`."""
    prefix = _prefix(name)
    return candidate.startswith(prefix) and bool(_RANDOM_PART.fullmatch(candidate[len(prefix) :]))


@functools.cache
def _umask() -> int:
    # Read once: reading it means setting it, which would race with threads creating files.
    current = os.umask(0o077)
    os.umask(current)
    return current


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
