"""What every data source shares: where its paths start, the problems it reports, and what it
yields (its signature).

A source reports a bad file or a bad column as `Problem`s with paths inside the spec's `data`
section; `validate` turns them into located diagnostics, and loading raises them as one
`DataError` whose message is a single line.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from tdsl import spec as S
from tdsl.data.data_root import HINT as DATA_ROOT_HINT
from tdsl.data.data_root import outside, outside_message
from tdsl.errors import SpecPath, TdslError, format_path
from tdsl.wording import did_you_mean


@attrs.frozen
class Problem:
    """A problem with the data, at `path` inside the spec's `data` section."""

    path: SpecPath
    message: str
    hint: str | None = None


class DataError(TdslError):
    """The data cannot be read as the spec says; carries every problem found."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = tuple(problems)
        first = self.problems[0]
        text = f"{format_path(('data', *first.path))}: {first.message}"
        if first.hint:
            text += f" ({first.hint})"
        if len(self.problems) > 1:
            text += f" (and {len(self.problems) - 1} more problems; see `tdsl validate`)"
        super().__init__(text)

    @classmethod
    def at(cls, path: SpecPath, message: str, hint: str | None = None) -> DataError:
        return cls([Problem(tuple(path), message, hint)])


class Problems:
    """A collector for one source's problems; `check()` raises them all at once."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, path: SpecPath, message: str, hint: str | None = None) -> None:
        self.items.append(Problem(tuple(path), message, hint))

    def extend(self, error: DataError) -> None:
        self.items.extend(error.problems)

    def check(self) -> None:
        if self.items:
            raise DataError(self.items)


@attrs.frozen
class Context:
    """What loading a source needs besides the source itself."""

    base: Path  # where relative paths start: the spec file's folder, or the current one
    seed: int = 0
    inputs: tuple[S.Input, ...] = ()  # the model's inputs (shapes, dtypes)

    def path(self, value: str) -> Path:
        path = resolve_path(self.base, value)
        resolved = outside(path)  # with a data root: never open what lies outside it
        if resolved is not None:
            raise DataError.at((), outside_message(value, resolved), DATA_ROOT_HINT)
        return path


def spec_base(spec: S.Spec) -> Path:
    """The folder a spec's relative paths start from: its file's, or the current folder."""
    file = getattr(spec.source, "file", None)
    return Path(file).parent if file else Path(".")


def resolve_path(base: Path, value: str) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else base / path


def context(spec: S.Spec) -> Context:
    # No model (its section failed to convert, see tdsl.spec.partial): inputs unknown.
    inputs = tuple(spec.model.inputs) if spec.model is not None else ()
    return Context(spec_base(spec), spec.seed, inputs)


def path_fields(source: Any) -> list[str]:
    """The names of a source's fields that hold paths."""
    return [f.name for f in attrs.fields(type(source)) if f.metadata.get("path")]


def with_absolute_paths(spec: S.Spec) -> S.Spec:
    """The spec with its data paths absolute, so it means the same from any folder (the copy
    a run directory keeps)."""
    base = spec_base(spec)
    changes = {}
    for name in path_fields(spec.data):
        value = getattr(spec.data, name)
        if value is not None:
            changes[name] = str(resolve_path(base, value).absolute())
    return attrs.evolve(spec, data=attrs.evolve(spec.data, **changes)) if changes else spec


def check_exists(path: Path, where: SpecPath, folder: bool = False) -> Problem | None:
    """A problem if `path` is missing or of the wrong kind, with near names as a hint."""
    if folder and path.is_dir() or not folder and path.is_file():
        return None
    if path.exists():
        wanted = "a folder" if folder else "a file"
        return Problem(where, f"{path} is not {wanted}")
    hint = None
    parent = path.parent
    if parent.is_dir():
        hint = did_you_mean(path.name, _names(parent), listing_limit=0)
    elif not parent.exists():
        hint = f"there is no folder {parent}"
    return Problem(where, f"no such {'folder' if folder else 'file'}: {path}", hint)


def _names(folder: Path) -> Iterable[str]:
    try:
        return [p.name for p in folder.iterdir() if not p.name.startswith(".")]
    except (OSError, ValueError):
        return []


def stamp(paths: Iterable[Path | None]) -> tuple:
    """Changes when any of `paths` changes — for a small file, its contents; for a folder,
    what it and its sub-folders hold: the key under which a prepared source is cached."""
    parts: list[Any] = []
    for path in paths:
        if path is None:
            continue
        try:
            parts.append(_stamp_one(path, digest=True))
            if path.is_dir():
                for child in sorted(path.iterdir()):
                    parts.append(_stamp_one(child))
                    if child.is_dir():
                        parts.extend(
                            _stamp_one(grandchild) for grandchild in sorted(child.iterdir())
                        )
        except (OSError, ValueError):  # ValueError: a NUL in the path
            parts.append((str(path), None))
    return tuple(parts)


SMALL_FILE = 16 * 2**20  # files up to this size are cached by content, not only by time


def _stamp_one(path: Path, digest: bool = False) -> tuple:
    info = path.stat()
    content = None
    if digest and path.is_file() and info.st_size <= SMALL_FILE:
        content = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
    return (str(path), info.st_mtime_ns, info.st_size, content)


@attrs.frozen
class FeatureInfo:
    shape: tuple[int, ...]
    dtype: str  # a torch dtype name, e.g. "float32", "int64"


@attrs.frozen
class DataSignature:
    """What a data source yields: its feature tensors (None: they follow the model's inputs),
    its target, and how many rows each split has (None where unknown without reading)."""

    features: tuple[FeatureInfo, ...] | None
    target: S.Target
    rows: dict[str, int] | None = None
    # Integer features are ids below this (token ids for an embedding), where known.
    id_limit: int | None = None
    # Language-model sources: the targets are token ids (with the vocabulary in the fitted
    # transforms), and every target that is not a token id is `ignore_index` (None: none).
    tokens: bool = False
    ignore_index: int | None = None
    # Several named targets (`targets:`), in the order of the target tensor's columns; None:
    # one target, `target`.
    targets: Any = None

    @property
    def feature_shape(self) -> tuple[int, ...] | None:
        return self.features[0].shape if self.features else None

    @property
    def feature_dtype(self) -> str:
        return self.features[0].dtype if self.features else "float32"


def tensor_signature(
    arrays: Sequence[Any],
    dtypes: Sequence[torch.dtype],
    target: torch.Tensor,
    source: Any,
    found_classes: int | None,
    splits: Sequence[Any],
) -> DataSignature:
    """The signature of named arrays (tensor files, a factory's result): their per-row
    shapes and dtypes, the target as `source` declares it, and each split's rows."""
    infos = tuple(
        FeatureInfo(tuple(a.shape[1:]), str(d).removeprefix("torch."))
        for a, d in zip(arrays, dtypes, strict=True)
    )
    target_spec = S.Target(
        kind=source.target_kind,
        num_classes=source.num_classes or found_classes,
        shape=tuple(target.shape[1:]) or (1,),
    )
    names = ("train", "val", "test")
    rows = {n: len(s) for n, s in zip(names, splits, strict=True) if s is not None}
    return DataSignature(infos, target_spec, rows)


def integer_dtype(dtype: str) -> bool:
    return dtype.startswith(("int", "uint")) or dtype == "bool"
