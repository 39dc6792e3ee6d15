"""Checkpoint files that can be checked: `last.pt` and beside it `last.pt.sha256`.

torch ignores the zip CRCs when it loads, so a flipped byte inside a tensor record would load
silently; the SHA-256 of the whole file, written beside it in `sha256sum` format, catches it.
A run directory from before checksums has no such file and loads as it always did.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import stat
import zipfile
from pathlib import Path
from typing import Any

import torch

from tdsl.errors import TdslError
from tdsl.special_files import special_file
from tdsl.train.atomic_files import atomic_write_bytes, atomic_write_text, is_temporary_of
from tdsl.train.checkpoint_layout import layout_problem, not_a_checkpoint, refused_pickle

CHECKSUM_SUFFIX = ".sha256"
# Digests a checksum file may list while a checkpoint is being replaced (see write_checkpoint).
MAX_LISTED = 8
_CHUNK = 1 << 20


class CheckpointError(TdslError):
    """A checkpoint file is missing, damaged or not a tdsl checkpoint; `reason` says which
    without the path (for offering another checkpoint after it)."""

    def __init__(self, path: Path, reason: str, message: str | None = None):
        super().__init__(message or f"cannot read checkpoint {path}: {reason}")
        self.path, self.reason = path, reason


def checksum_path(path: Path) -> Path:
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def _listed(path: Path) -> list[str]:
    """The digests `path`'s checksum file lists (none when it has no such file)."""
    try:
        text = checksum_path(path).read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CheckpointError(path, f"cannot read its checksum file: {exc.strerror}") from None
    return [line.split()[0].lower() for line in text.splitlines() if line.split()]


def write_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """`payload` saved atomically at `path`, with its SHA-256 in `path.sha256`.

    The two files cannot be replaced together, so while the checkpoint is written its
    checksum file lists the new digest and the ones before it, and afterwards only the new
    one: a run killed at any moment leaves a checkpoint whose digest is listed."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    line = lambda d: f"{d}  {path.name}\n"  # noqa: E731  (sha256sum -c reads this)
    before = [d for d in _listed(path) if d != digest][: MAX_LISTED - 1]
    atomic_write_text(checksum_path(path), "".join(map(line, [digest, *before])))
    atomic_write_bytes(path, data)
    atomic_write_text(checksum_path(path), line(digest))


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _damage(path: Path) -> str:
    """What is wrong with a checkpoint that fails to load or to match its checksum."""
    if not zipfile.is_zipfile(path):
        size = path.stat().st_size
        return f"it is truncated or not a checkpoint at all ({size} bytes, not a whole zip archive)"
    return (
        f"its checksum does not match {checksum_path(path).name}, written with it: the file was "
        "damaged or changed since (a checkpoint replaced on purpose needs that file deleted)"
    )


def read_checkpoint(path: Path, check_layout: bool = True) -> dict[str, Any]:
    """The checkpoint at `path` loaded on the CPU with `weights_only`, after its checksum (if
    it has one) is verified, and checked to hold what a run's checkpoint holds (unless
    `check_layout` is False). Raises CheckpointError saying what failed, in one line."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise CheckpointError(path, "no such file") from None
    except OSError as exc:
        raise CheckpointError(path, exc.strerror or str(exc)) from None
    if not stat.S_ISREG(mode):  # a FIFO or device would block the read forever
        kind = special_file(path) or "a special file"
        raise CheckpointError(path, f"it is {kind}, not a regular file")
    listed = _listed(path)
    try:
        if listed and file_digest(path) not in listed:
            raise CheckpointError(path, _damage(path))
        loaded = torch.load(path, map_location="cpu", weights_only=True)  # any device -> CPU
    except CheckpointError:
        raise
    except Exception as exc:  # torch's reasons are long, or empty, or "[Errno 22]": say it plainly
        if isinstance(exc, pickle.UnpicklingError) or "weights_only" in str(exc):
            # Objects beyond tensors (code, maybe): never torch's advice, weights_only=False.
            why = "it holds Python objects beyond tensors"
            raise CheckpointError(path, why, refused_pickle(path)) from None
        if not zipfile.is_zipfile(path):
            raise CheckpointError(path, _damage(path)) from None
        if isinstance(exc, OSError):
            raise CheckpointError(path, exc.strerror or str(exc)) from None
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(path, f"{type(exc).__name__}: {first}") from None
    why = layout_problem(loaded) if check_layout else None  # another program may have written it
    if why is not None:
        raise CheckpointError(path, f"not a tdsl checkpoint ({why})", not_a_checkpoint(path, why))
    return loaded


def is_intact(path: Path) -> bool:
    """Whether the checkpoint at `path` exists, matches its checksum and loads."""
    try:
        read_checkpoint(path)
    except CheckpointError:
        return False
    return True


def remove_orphans(directory: Path, names: tuple[str, ...]) -> list[Path]:
    """Delete the temporary files an atomic write of one of `names` in `directory` left when
    the process was killed mid-write (atomic_files names them `.NAME.XXXXXXXX`); returns them.
    Only files of exactly that pattern are touched."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        if any(is_temporary_of(entry.name, name) for name in names) and entry.is_file(
            follow_symlinks=False
        ):
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed
