"""Reading only regular files: a FIFO or a terminal named where a data file, a checkpoint
or a spec is expected would block a reader forever, and a device may never end. Every
reader checks with these before it opens (or opens through `open_regular`)."""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

from tdsl.errors import TdslError


class NotRegularFileError(TdslError, OSError):
    """A path tdsl would read is a FIFO, a device, a socket or a directory: reading a FIFO
    or a terminal blocks forever, a device may never end. Its `strerror` says which, for
    readers that report an OSError's reason."""

    def __str__(self) -> str:
        return f"{self.filename} is {self.strerror}"


def special_file(path: str | os.PathLike) -> str | None:
    """What `path` is when it is there but not a regular file ("a FIFO (named pipe)", "a
    directory", ...); None for a regular file, or for a missing one (opening it says so)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return None
    return _kind_of(mode)


_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


def _kind_of(mode: int) -> str:
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def require_regular_file(path: str | os.PathLike) -> None:
    """Raise NotRegularFileError unless `path` is a regular file (or missing)."""
    kind = special_file(path)
    if kind is not None:
        message = f"{kind}, not a regular file"
        raise NotRegularFileError(errno.EINVAL, message, os.fspath(path))


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """`path` opened for reading in binary, refusing (with NotRegularFileError) anything but
    a regular file without blocking on it: it is opened non-blocking and checked through the
    open descriptor, so a file swapped for a FIFO after a check cannot hang the reader."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        message = f"{_kind_of(mode)}, not a regular file"
        raise NotRegularFileError(errno.EINVAL, message, os.fspath(path))
    if hasattr(os, "set_blocking"):
        os.set_blocking(descriptor, True)
    return os.fdopen(descriptor, "rb")
