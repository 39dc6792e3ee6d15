"""Tensor files: named arrays from an .npz file, a .pt file (a dict of tensors, read with
`weights_only=True`), or a folder of NAME.npy files.

.npz and .pt arrays are read into memory and take the `TensorData` fast path. A folder's
.npy files are read batch by batch in DataLoader workers, each batch's rows with positional
reads, so a data set larger than memory trains with resident memory of a few batches; only
the target array is read whole (for splitting and stratifying).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tdsl import spec as S
from tdsl.data.base import (
    Context,
    DataError,
    Problems,
    check_exists,
    tensor_signature,
)
from tdsl.data.finite import STREAMED_ROWS, check_finite
from tdsl.data.streaming import FileData
from tdsl.data.tensors import Batch, Splits, TensorData, split_index
from tdsl.registry.ops import DTYPES
from tdsl.special_files import require_regular_file
from tdsl.wording import did_you_mean, file_reason

FILES = ("file", "val_file", "test_file")


class _RowFile:
    """Rows of one C-ordered .npy file read with positional reads (`os.preadv`) into fresh
    arrays. Unlike indexing a memory map, nothing stays mapped: a shuffled epoch over a
    memory map touches every page of the file, and each process's resident memory would
    grow to the file's size."""

    def __init__(self, path: Path):
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)  # header only, nothing read
        self.offset, self.dtype, self.row_shape = mapped.offset, mapped.dtype, mapped.shape[1:]
        self.row_bytes = mapped.dtype.itemsize * int(np.prod(self.row_shape, dtype=np.int64))
        self.rows = mapped.shape[0]
        del mapped
        self.path = path

    def read(self, index: np.ndarray) -> np.ndarray:
        order = np.argsort(index, kind="stable")
        wanted = index[order]
        if len(wanted) and (wanted[0] < 0 or wanted[-1] >= self.rows):
            raise ValueError(f"row {int(wanted[-1])} is outside the file's {self.rows} rows")
        data = np.empty((len(index), *self.row_shape), self.dtype)
        flat = data.reshape(len(index), -1).view(np.uint8)
        # Rows with consecutive numbers are one read: sequential batches cost one system call.
        breaks = np.flatnonzero(np.diff(wanted) != 1) + 1
        # Opened per batch (microseconds) rather than held: nothing to close when the
        # reader is dropped, and each worker process has its own descriptor.
        with open(self.path, "rb", buffering=0) as file:
            for start, stop in zip([0, *breaks], [*breaks, len(wanted)], strict=True):
                if start == stop:
                    continue
                size = (stop - start) * self.row_bytes
                read = os.preadv(
                    file.fileno(),
                    [flat[start:stop].reshape(-1)],
                    self.offset + int(wanted[start]) * self.row_bytes,
                )
                if read != size:
                    raise OSError(f"the file ended early ({read} of {size} bytes read)")
        rows = np.empty_like(data)
        rows[order] = data
        return rows


class NpyReader:
    """Rows of .npy feature files; files are opened lazily in each (worker) process."""

    def __init__(self, paths: list[Path], dtypes: list[torch.dtype], target: torch.Tensor):
        self.paths, self.dtypes, self.target = paths, dtypes, target
        self._arrays: list[Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None}

    def __len__(self) -> int:
        return len(self.target)

    def arrays(self) -> list[Any]:
        if self._arrays is None:
            self._arrays = [_open_rows(p) for p in self.paths]
        return self._arrays

    def read(self, index: np.ndarray, augment_seed: int | None = None) -> Batch:
        try:
            rows = [_rows_of(a, index) for a in self.arrays()]
        except (OSError, ValueError) as exc:
            raise DataError.at(
                ("file",),
                f"cannot read rows of {self.paths[0].parent}: {file_reason(exc)}",
            ) from None
        features = tuple(torch.from_numpy(r).to(d) for r, d in zip(rows, self.dtypes, strict=True))
        return Batch(features, self.target[torch.from_numpy(index)])


def _open_rows(path: Path) -> Any:
    mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    # Positional reads need C order and os.preadv (not on Windows); otherwise the map.
    if hasattr(os, "preadv") and mapped.flags.c_contiguous:
        return _RowFile(path)
    return mapped


def _rows_of(array: Any, index: np.ndarray) -> np.ndarray:
    if isinstance(array, _RowFile):
        return array.read(index)
    return np.asarray(array[index])  # copies just these rows


def _open(path: Path, key: str, problems: Problems) -> dict[str, Any] | None:
    """name -> array (np.ndarray, memmap or tensor), or None after reporting a problem."""
    try:
        if path.is_dir():
            found = sorted(path.glob("*.npy"))
            for file in found:  # a FIFO would block the read forever
                require_regular_file(file)
            return {p.stem: np.load(p, mmap_mode="r", allow_pickle=False) for p in found}
        require_regular_file(path)
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
        if path.suffix.lower() == ".pt":
            loaded = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(loaded, dict) and all(
                isinstance(v, torch.Tensor) for v in loaded.values()
            ):
                return {str(k): v for k, v in loaded.items()}
            problems.add((key,), f"{path} does not hold a dict of named tensors")
            return None
    except Exception as exc:  # a truncated or foreign file: say which and why, in one line
        named = getattr(exc, "filename", None)  # a file inside the folder
        problems.add((key,), f"cannot read {named or path}: {file_reason(exc)}")
        return None
    problems.add((key,), f"{path}: expected an .npz or .pt file, or a folder of .npy files")
    return None


def _dtype_name(array: Any) -> str:
    return str(array.dtype).removeprefix("torch.")


def _cast(array_dtype: str, wanted: str | None) -> torch.dtype:
    """The model input's dtype when the array is of the same family (float or integer)."""
    mine = DTYPES.get(array_dtype) or torch.from_numpy(np.zeros(0, dtype=array_dtype)).dtype
    if wanted is not None and DTYPES[wanted].is_floating_point == mine.is_floating_point:
        return DTYPES[wanted]
    return mine


def _target(source: S.Tensors, array: Any, where: str, problems: Problems) -> torch.Tensor | None:
    values = torch.as_tensor(np.array(array)) if not isinstance(array, torch.Tensor) else array
    if source.target_kind == "class":
        if values.is_floating_point() or values.dim() == 0:
            problems.add(
                ("target",),
                "class targets are integer labels, one per row; "
                f"{where} has {_dtype_name(values)} {list(values.shape)}",
            )
            return None
        if values.dim() > 1 and tuple(values.shape[1:]) != (1,):
            # A label per position (tokens, pixels); negative ones mark positions the loss
            # ignores (ignore_index).
            return values.long()
        values = values.reshape(-1).long()
        if len(values) and int(values.min()) < 0:
            problems.add(("target",), f"{where} has a negative class label")
        return values
    values = values.float()
    if values.dim() == 1:
        values = values.reshape(-1, 1)
    if source.target_kind == "binary" and not bool(((values == 0) | (values == 1)).all()):
        problems.add(
            ("target_kind",),
            f"{where} has values other than 0 and 1",
            "use target_kind: class or regression",
        )
    return values


def prepare(source: S.Tensors, ctx: Context, _fitted: object = None):
    problems = Problems()
    names = [*source.features, source.target]
    if len(set(names)) < len(names):
        problems.add(("features",), "an array is named twice among the features and the target")
    if source.num_classes is not None and source.target_kind != "class":
        problems.add(("num_classes",), "num_classes applies to class targets")
    keys = [k for k in FILES if getattr(source, k) is not None]
    paths = {k: ctx.path(getattr(source, k)) for k in keys}
    for key, path in paths.items():
        found = check_exists(path, (key,)) if not path.is_dir() else None
        if found:
            problems.items.append(found)
    problems.check()
    opened = {key: _open(path, key, problems) for key, path in paths.items()}
    problems.check()
    wanted = (
        [i.dtype for i in ctx.inputs]
        if len(ctx.inputs) == len(source.features)
        else [None] * len(source.features)
    )
    parts: dict[str, tuple[list, torch.Tensor | None]] = {}
    for key, arrays in opened.items():
        where = paths[key]
        for index, name in enumerate(names):
            if name not in arrays:
                path = ("target",) if index == len(source.features) else ("features", index)
                problems.add(path, f"no array {name!r} in {where}", did_you_mean(name, arrays))
        for index, name in enumerate(names):
            dtype = arrays[name].dtype if name in arrays else None
            if isinstance(dtype, np.dtype) and dtype.kind not in "biuf":
                path = ("target",) if index == len(source.features) else ("features", index)
                problems.add(path, f"array {name!r} in {where} holds {dtype}, not numbers")
        if problems.items:
            continue
        counts = {name: len(arrays[name]) for name in names}
        if len(set(counts.values())) > 1:
            problems.add((key,), f"the arrays in {where} have different row counts: {counts}")
            continue
        for index, name in enumerate(names):  # a folder's .npy files: their first batches
            path = ("target",) if index == len(source.features) else ("features", index)
            first = STREAMED_ROWS if where.is_dir() and path != ("target",) else None
            check_finite(arrays[name], f"array {name!r} in {where}", path, problems, first)
        if problems.items:
            continue
        parts[key] = (
            [arrays[n] for n in source.features],
            _target(source, arrays[source.target], str(where), problems),
        )
    problems.check()
    features, target = parts["file"]
    for key, (others, _) in parts.items():
        for index, (mine, theirs) in enumerate(zip(features, others, strict=True)):
            if tuple(mine.shape[1:]) != tuple(theirs.shape[1:]):
                problems.add(
                    ("features", index),
                    f"rows of {source.features[index]!r} are {list(theirs.shape[1:])} in "
                    f"{paths[key]}, {list(mine.shape[1:])} in {paths['file']}",
                )
    dtypes = [_cast(_dtype_name(a), w) for a, w in zip(features, wanted, strict=True)]
    found = None
    if source.target_kind == "class":
        found = max(int(t.max()) + 1 if len(t) else 0 for _, t in parts.values())
        if source.num_classes is not None and found > source.num_classes:
            problems.add(
                ("num_classes",),
                f"the labels go up to {found - 1}, num_classes is {source.num_classes}",
            )
    problems.check()
    strata = target.reshape(len(target), -1)[:, 0].long() if source.split.stratify else None
    own = ("val_file" in parts, "test_file" in parts)
    index = split_index(
        len(target), source.split, torch.Generator().manual_seed(ctx.seed), strata, own
    )
    splits = []
    for which, key in ((index.train, "file"), (index.val, "val_file"), (index.test, "test_file")):
        if key != "file" and key in parts:
            rows = _rows(source, paths[key], *parts[key], dtypes)
            splits.append(rows)
        elif which is None:
            splits.append(None)
        else:
            splits.append(_rows(source, paths["file"], features, target, dtypes, which))
    signature = tensor_signature(features, dtypes, target, source, found, splits)
    return Splits(*splits), signature


def _rows(source: S.Tensors, path: Path, features: list, target: torch.Tensor, dtypes, which=None):
    if path.is_dir():
        reader = NpyReader([path / f"{n}.npy" for n in source.features], dtypes, target)
        index = np.arange(len(target)) if which is None else which.numpy()
        return FileData(reader, index, workers=source.workers)
    tensors = tuple(
        torch.as_tensor(np.asarray(f) if not isinstance(f, torch.Tensor) else f).to(d)
        for f, d in zip(features, dtypes, strict=True)
    )
    rows = TensorData(tensors, target)
    return rows if which is None else rows.subset(which)
