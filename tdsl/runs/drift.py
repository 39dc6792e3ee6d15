"""Drift between a run and what it is used with later: its data files changed before a
`resume`, or its spec.yaml edited before an `eval`/`predict` (which use the spec recorded in
the checkpoint). Neither is refused — both can be on purpose — but neither goes unsaid.

A data file's fingerprint is its size, modification time and the SHA-256 of its first and
last 64 KiB: cheap for any size, and it catches appended, truncated and rewritten files.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from tdsl import spec as S
from tdsl.data import path_fields
from tdsl.train.atomic_files import atomic_write_text

FINGERPRINTS = "data_fingerprints.json"
BLOCK = 64 * 1024


def _file(path: Path, info: os.stat_result) -> dict[str, Any]:
    with path.open("rb") as handle:
        head = handle.read(BLOCK)
        handle.seek(max(0, info.st_size - BLOCK))
        tail = handle.read(BLOCK)
    return {
        "size": info.st_size,
        "mtime_ns": info.st_mtime_ns,
        "first_block": hashlib.sha256(head).hexdigest(),
        "last_block": hashlib.sha256(tail).hexdigest(),
    }


def _folder(path: Path) -> dict[str, Any]:
    listing, size, newest = hashlib.sha256(), 0, 0
    for root, folders, files in os.walk(path):
        folders.sort()
        for name in sorted(files):
            child = Path(root, name)
            try:
                info = child.lstat()
            except OSError:
                continue
            size, newest = size + info.st_size, max(newest, info.st_mtime_ns)
            line = f"{child.relative_to(path)}\0{info.st_size}\0{info.st_mtime_ns}\n"
            listing.update(line.encode("utf-8", "surrogateescape"))
    return {"folder": True, "bytes": size, "mtime_ns": newest, "listing": listing.hexdigest()}


def fingerprint(path: Path) -> dict[str, Any] | None:
    """The fingerprint of a data file or folder; None when it cannot be read."""
    try:
        info = path.stat()
        if path.is_dir():
            return _folder(path)
        return _file(path, info) if path.is_file() else None
    except OSError:
        return None


def data_paths(spec: S.Spec) -> dict[str, Path]:
    """`data.FIELD` -> path for each data path the spec names (absolute in a run's spec)."""
    return {
        f"data.{name}": Path(value)
        for name in path_fields(spec.data)
        if isinstance(value := getattr(spec.data, name), str)
    }


def record_data(directory: Path, spec: S.Spec) -> None:
    """Write the fingerprints of `spec`'s data files into the run directory."""
    prints = {
        where: {"path": str(path), **found}
        for where, path in data_paths(spec).items()
        if (found := fingerprint(path)) is not None
    }
    atomic_write_text(directory / FINGERPRINTS, json.dumps(prints, indent=2) + "\n")


def _when(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ns / 1e9))


def _changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    if old.get("folder") != new.get("folder"):
        return ["it was a " + ("folder" if old.get("folder") else "file")]
    changes = []
    size = "bytes" if old.get("folder") else "size"
    if old[size] != new[size]:
        changes.append(f"{old[size]} -> {new[size]} bytes")
    if old["mtime_ns"] != new["mtime_ns"]:
        changes.append(f"modified {_when(old['mtime_ns'])} -> {_when(new['mtime_ns'])}")
    if old.get("listing") != new.get("listing") and old.get("folder"):
        changes.append("its files differ")
    for block, what in (("first_block", "first"), ("last_block", "last")):
        if old.get(block) != new.get(block) and not old.get("folder"):
            changes.append(f"its {what} 64 KiB differ")
    return changes


def data_drift(directory: Path) -> list[str]:
    """One line per data file that changed since the run recorded it (none for a run
    without fingerprints, from before they were kept)."""
    try:
        recorded = json.loads((directory / FINGERPRINTS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    lines = []
    for where, old in recorded.items() if isinstance(recorded, dict) else ():
        path = Path(old.get("path", ""))
        new = fingerprint(path)
        if new is None:
            lines.append(f"{where} {path} is gone or unreadable since the run started")
            continue
        changes = _changes(old, new)
        if changes:
            lines.append(f"{where} {path} changed since the run started: {'; '.join(changes)}")
    return lines


def spec_edits(directory: Path, recorded: str, which: str) -> str | None:
    """A warning when `directory`/spec.yaml differs from the spec text the `which`
    checkpoint recorded (spec.yaml as the run wrote it), with the first lines of a diff."""
    try:
        current = (directory / "spec.yaml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if current == recorded:
        return None
    diff = list(
        difflib.unified_diff(
            recorded.splitlines(), current.splitlines(), f"checkpoints/{which}.pt", "spec.yaml"
        )
    )[2:]
    shown = [line for line in diff if line[:1] in "+-"][:6]
    return (
        f"warning: {directory / 'spec.yaml'} was edited after the run wrote it; this uses the "
        f"spec recorded in checkpoints/{which}.pt, not the edited file ("
        + "; ".join(shown)
        + ("; ..." if len(shown) < len([d for d in diff if d[:1] in "+-"]) else "")
        + ")"
    )
