"""Token ids kept in a run directory (`data_cache/`), so `resume`, `eval` and loading the
run's data again skip tokenizing a large text.

An entry is one JSON file per source kind (`text.json`, `text_lm.json`) naming its key and
its arrays, each array a raw little-endian file whose name holds the key's hash. The key is
the SHA-256 of every data file's bytes (the very bytes the ids were made from: a file is read
once, hashed and decoded) with the tokenizer's settings, so any change to a file or to the
settings misses; the entry also holds the vocabulary, and ids made with another vocabulary
(the run's `transforms.json`) miss too. The cache is never trusted over the source: a file is
always read and hashed, only tokenizing is skipped (and, for labelled text, whose entry keeps
the targets too, parsing its lines).

The cache is used inside `using(TokenCache(...))` (`tdsl.runs.data_cache` makes one for a run
directory, writing through atomic writes). A read-only cache (no `write`) keeps what it
would have written until a writable cache of the same folder is in use, so a new run can
tokenize while it validates, before its directory may be written, and store the ids after.
Only regular files are read, never through a symbolic link; a damaged entry is a miss.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from tdsl.errors import TdslError

FOLDER = "data_cache"
FORMAT = 1
_ORDER = "<"  # little-endian on disk, whatever the machine


@attrs.frozen
class TokenCache:
    folder: Path
    # Writes bytes to a path atomically (tdsl.train.atomic_files); None: read only.
    write: Callable[[Path, Any], None] | None = None
    # False: ids made while it is in use are not kept (data that is not the run's own).
    keep_new: bool = True


@attrs.frozen(eq=False)
class Entry:
    vocabulary: Any  # the fitted vocabulary, as JSON data
    arrays: dict[str, np.ndarray]  # integer arrays are ids; float ones are kept as they are
    labels: Any = None  # what else the source read (its targets' kind, class names), as JSON


_active: contextvars.ContextVar[TokenCache | None] = contextvars.ContextVar(
    "tdsl_token_cache", default=None
)
_pending: dict[tuple[Path, str], tuple[str, dict[str, Any], Entry]] = {}


@contextlib.contextmanager
def using(cache: TokenCache) -> Iterator[None]:
    """Use `cache` for the text sources loaded inside."""
    token = _active.set(cache)
    try:
        yield
    finally:
        _active.reset(token)


def active() -> TokenCache | None:
    return _active.get()


def forget_pending() -> None:
    _pending.clear()


def read_bytes(path: Path) -> tuple[bytes, str | None]:
    """The file's bytes, and their SHA-256 when a cache is in use (None otherwise: hashing
    100 MB costs a third of a second)."""
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest() if active() is not None else None


def decode(data: bytes) -> str:
    """The text as `Path.read_text(encoding="utf-8-sig")` reads it (universal newlines)."""
    text = data.decode("utf-8-sig")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def read_text(path: Path) -> tuple[str, str | None]:
    """The file's text, and the SHA-256 of the bytes it was decoded from (see
    `read_bytes`): hashed and decoded from one read, so the key is the text's own."""
    data, digest = read_bytes(path)
    return decode(data), digest


def key(name: str, settings: Mapping[str, Any], digests: Mapping[str, str]) -> dict[str, Any]:
    """The key of the ids a source makes from files of these digests with these settings (as
    JSON data: the key read back from an entry compares equal)."""
    data = {"format": FORMAT, "kind": name, "settings": dict(settings), "files": dict(digests)}
    return json.loads(json.dumps(data, sort_keys=True, default=str))


def _hash(key_data: dict[str, Any]) -> str:
    text = json.dumps(key_data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def find(name: str, key_data: dict[str, Any], vocabulary: Any | None) -> Entry | None:
    """The active cache's entry for `key_data`, when there is one and (given `vocabulary`)
    it was made with that vocabulary; None otherwise."""
    cache = active()
    if cache is None:
        return None
    found = _pending.get((cache.folder, name))
    if found is not None and found[1] == key_data:
        entry = found[2]
    else:
        entry = _load(cache.folder, name, key_data)
    if (
        entry is None
        or vocabulary is not None
        and _canonical(vocabulary) != _canonical(entry.vocabulary)
    ):
        return None
    return entry


def find_files(
    name: str, key_data: dict[str, Any], vocabulary: Any, ignore: tuple[str, ...]
) -> Entry | None:
    """For a source whose ids are one array per file, named like the file's key, and made
    from that file's bytes, the tokenizer and the vocabulary alone: the active cache's entry
    when its settings equal `key_data`'s but for `ignore` (settings that only choose the
    vocabulary, which is given and must match) and it holds every file of `key_data` by
    digest, under any key. Its arrays are renamed to `key_data`'s keys (with what the entry
    kept per file, `FILE:...`, such as its targets). `eval --data` scores the run's own
    file this way: one split of all its rows, the same ids."""
    cache = active()
    if cache is None:
        return None
    pending = _pending.get((cache.folder, name))
    stored = pending[1] if pending is not None else _stored_key(cache.folder, name)
    if not isinstance(stored, dict) or _without(stored, ignore) != _without(key_data, ignore):
        return None
    named = {digest: file for file, digest in stored.get("files", {}).items()}
    if not all(digest in named for digest in key_data["files"].values()):
        return None
    entry = find(name, stored, vocabulary)
    if entry is None:
        return None
    arrays = {}
    for file, digest in key_data["files"].items():
        stored_file = named[digest]
        for array, values in entry.arrays.items():
            if array == stored_file or array.startswith(f"{stored_file}:"):
                arrays[file + array[len(stored_file) :]] = values
    return Entry(entry.vocabulary, arrays, entry.labels)


def _without(key_data: dict[str, Any], ignore: tuple[str, ...]) -> dict[str, Any]:
    settings = key_data.get("settings")
    if not isinstance(settings, dict):
        return {}
    kept = {k: v for k, v in settings.items() if k not in ignore}
    return {"format": key_data.get("format"), "kind": key_data.get("kind"), "settings": kept}


def _read_meta(folder: Path, name: str) -> Any:
    """The entry's descriptor file, parsed (None when there is none to read)."""
    if not _folder_ok(folder):
        return None
    descriptor = _regular(folder / f"{name}.json")
    if descriptor is None:
        return None
    try:
        with os.fdopen(descriptor, "rb") as handle:
            return json.loads(handle.read(1 << 28).decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _stored_key(folder: Path, name: str) -> Any:
    """The key the entry on disk was made for (None when there is none to read)."""
    meta = _read_meta(folder, name)
    return meta.get("key") if isinstance(meta, dict) else None


def keep(name: str, key_data: dict[str, Any], entry: Entry) -> None:
    """Store `entry` in the active cache (when writable; else when one is)."""
    cache = active()
    if cache is None or not cache.keep_new:
        return
    if cache.write is None:
        _pending[(cache.folder, name)] = (_hash(key_data), key_data, entry)
    else:
        _pending.pop((cache.folder, name), None)
        _store(cache, name, key_data, entry)


def flush() -> None:
    """Write what a read-only cache of the active (writable) cache's folder kept."""
    cache = active()
    if cache is None or cache.write is None:
        return
    for (folder, name), (_, key_data, entry) in list(_pending.items()):
        if folder == cache.folder:
            del _pending[(folder, name)]
            stored = _load(cache.folder, name, key_data, arrays=False)
            # Also over an entry of these ids written before entries kept the labels.
            if stored is None or stored.labels is None and entry.labels is not None:
                _store(cache, name, key_data, entry)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=False)


def _regular(path: Path) -> int | None:
    """A descriptor of `path` opened for reading when it is a regular file reached without a
    symbolic link (the last part; the folder is checked by its caller), else None."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        return None
    return descriptor


def _folder_ok(folder: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(folder).st_mode)  # lstat: a link to elsewhere is refused
    except (OSError, ValueError):
        return False


def _load(folder: Path, name: str, key_data: dict[str, Any], arrays: bool = True) -> Entry | None:
    meta = _read_meta(folder, name)
    try:
        if not isinstance(meta, dict) or meta.get("key") != key_data:
            return None
        if not arrays:
            return Entry(meta["vocabulary"], {}, meta.get("labels"))
        loaded = {}
        for array, (file, dtype, shape) in meta["arrays"].items():
            loaded[array] = _array(folder / file, np.dtype(_ORDER + dtype), tuple(shape))
            if loaded[array] is None:
                return None
            low, high = meta["bounds"][array]
            if loaded[array].size and (loaded[array].min() < low or loaded[array].max() > high):
                return None  # not the ids written: damaged
        return Entry(meta["vocabulary"], loaded, meta.get("labels"))
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def _array(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray | None:
    if "/" in path.name or path.name.startswith("."):
        return None
    descriptor = _regular(path)
    if descriptor is None:
        return None
    count = int(np.prod(shape, dtype=np.int64))
    with os.fdopen(descriptor, "rb") as handle:
        if os.fstat(handle.fileno()).st_size != count * dtype.itemsize:
            return None
        values = np.fromfile(handle, dtype=dtype, count=count)
    values = values.reshape(shape)
    return values.astype(dtype.newbyteorder("=")) if dtype.kind == "f" else values.astype(np.int64)


def _compact(values: np.ndarray) -> np.ndarray:
    """The ids in the smallest integer type that holds them (disk and reading time)."""
    low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
    for kind in (np.uint8, np.uint16, np.int32):
        if low >= np.iinfo(kind).min and high <= np.iinfo(kind).max:
            return values.astype(np.dtype(kind).newbyteorder(_ORDER))
    return values.astype(np.dtype(np.int64).newbyteorder(_ORDER))


def _store(cache: TokenCache, name: str, key_data: dict[str, Any], entry: Entry) -> None:
    # A full or read-only disk: no entry (its JSON goes last), as the cache is a shortcut.
    with contextlib.suppress(OSError, TdslError):
        _write_entry(cache, name, key_data, entry)


def _write_entry(cache: TokenCache, name: str, key_data: dict[str, Any], entry: Entry) -> None:
    folder = cache.folder
    if folder.exists() and not _folder_ok(folder):
        return  # a link or a file where the cache would go: leave it alone
    digest = _hash(key_data)
    files, bounds = {}, {}
    for array, values in entry.arrays.items():
        values = np.ascontiguousarray(values)
        floats = values.dtype.kind == "f"
        stored = values.astype(values.dtype.newbyteorder(_ORDER)) if floats else _compact(values)
        file = f"{name}-{digest}-{array}.bin"
        cache.write(folder / file, memoryview(stored).cast("B"))
        files[array] = (file, stored.dtype.str[1:], list(values.shape))
        number = float if floats else int
        bounds[array] = (number(values.min()), number(values.max())) if values.size else (0, 0)
    meta = {"key": key_data, "vocabulary": entry.vocabulary, "arrays": files, "bounds": bounds}
    if entry.labels is not None:
        meta["labels"] = entry.labels
    # The JSON last: until it names the new arrays, the old entry (and its arrays) stand.
    cache.write(folder / f"{name}.json", (json.dumps(meta, indent=1) + "\n").encode("utf-8"))
    for old in folder.glob(f"{name}-*.bin"):
        if not old.name.startswith(f"{name}-{digest}-"):
            old.unlink(missing_ok=True)
