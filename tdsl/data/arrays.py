"""Arrays a program already holds (`tdsl.Arrays`): checked like every other source, batched
by the `TensorData` fast path, and stored as .npz files in a run directory.

The rows are split exactly as a `kind: tensors` source over the same arrays would split
them (the same seeded `split_index`), so the tensors source a run directory stores
(`stored_spec`) gives `resume`, `eval` and `predict` the very same splits.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from tdsl import spec as S
from tdsl.data.base import Context, DataError, Problems, tensor_signature
from tdsl.data.files import _cast, _target
from tdsl.data.finite import check_finite
from tdsl.data.imported import _tensor
from tdsl.data.tensors import Splits, TensorData, split_index
from tdsl.errors import SpecPath
from tdsl.spec.arrays_source import feature_items

PARTS = ("train", "val", "test")
FILES = {"train": "data.npz", "val": "val.npz", "test": "test.npz"}


def _features(
    features: Any, part: str, ctx: Context, problems: Problems
) -> list[tuple[str, torch.Tensor]]:
    """(label, tensor) per feature, in the model inputs' order."""
    items = feature_items(features)
    path: SpecPath = (part,)
    names = [i.name for i in ctx.inputs]
    if items and items[0][0] is not None:  # a mapping: matched to the inputs by name
        given = dict(items)
        for name in given:
            if name not in names:
                problems.add(path, f"features {name!r} match no model input (inputs: {names})")
        ordered = []
        for name in names:
            if name not in given:
                problems.add(path, f"no features for model input {name!r}")
            else:
                ordered.append((name, given[name]))
        items = ordered
    out = []
    for index, (name, value) in enumerate(items):
        label = f"{part} features {name!r}" if name else f"{part} features[{index}]"
        tensor = _tensor(value, path, label, problems)
        check_finite(tensor, label, path, problems)
        out.append((label, tensor))
    return out


def raw_parts(source: S.Arrays, ctx: Context) -> dict[str, tuple[list[torch.Tensor], torch.Tensor]]:
    """part -> (feature tensors as given, target as given), checked; raises `DataError`."""
    problems = Problems()
    parts: dict[str, tuple[list[torch.Tensor], torch.Tensor]] = {}
    for part in PARTS:
        pair = getattr(source, part)
        if pair is None:
            continue
        features = _features(pair[0], part, ctx, problems)
        target = _tensor(pair[1], (part,), f"{part} target", problems)
        check_finite(target, f"{part} target", (part,), problems)
        counts = {label: len(t) for label, t in features}
        counts[f"{part} target"] = len(target)
        if problems.items:
            continue
        if len(set(counts.values())) > 1:
            shown = ", ".join(f"{label} {n}" for label, n in counts.items())
            problems.add((part,), f"arrays of different lengths: {shown}")
        elif part == "train" and not len(target):
            problems.add((part,), "the training arrays have no rows")
        parts[part] = ([t for _, t in features], target)
    problems.check()
    first = parts["train"][0]
    for part, (features, _) in parts.items():
        if len(features) != len(first):
            problems.add((part,), f"{len(features)} feature arrays, train has {len(first)}")
            continue
        for index, (mine, theirs) in enumerate(zip(first, features, strict=True)):
            if tuple(mine.shape[1:]) != tuple(theirs.shape[1:]):
                problems.add(
                    (part,),
                    f"rows of features[{index}] are {list(theirs.shape[1:])} in {part}, "
                    f"{list(mine.shape[1:])} in train",
                )
    problems.check()
    return parts


def prepare(source: S.Arrays, ctx: Context, _fitted: object = None):
    """(Splits, DataSignature) of the arrays; raises `DataError`."""
    parts = raw_parts(source, ctx)
    problems = Problems()
    targets = {
        part: _target(source, target, f"the {part} target", problems)
        for part, (_, target) in parts.items()
    }
    if source.num_classes is not None and source.target_kind != "class":
        problems.add(("num_classes",), "num_classes applies to class targets")
    problems.check()
    found = None
    if source.target_kind == "class":
        found = max(int(t.max()) + 1 if len(t) else 0 for t in targets.values())
        if source.num_classes is not None and found > source.num_classes:
            problems.add(
                ("num_classes",),
                f"the labels go up to {found - 1}, num_classes is {source.num_classes}",
            )
    problems.check()
    features, target = parts["train"][0], targets["train"]
    wanted = [i.dtype for i in ctx.inputs]
    if len(wanted) != len(features):
        wanted = [None] * len(features)
    dtypes = [
        _cast(str(f.dtype).removeprefix("torch."), w) for f, w in zip(features, wanted, strict=True)
    ]

    def rows(part: str) -> TensorData:
        cast = tuple(f.to(d) for f, d in zip(parts[part][0], dtypes, strict=True))
        return TensorData(cast, targets[part])

    strata = target.reshape(len(target), -1)[:, 0].long() if source.split.stratify else None
    generator = torch.Generator().manual_seed(ctx.seed)
    index = split_index(len(target), source.split, generator, strata, source.own)
    main = rows("train")
    splits = [main.subset(index.train)]
    for part, which, own in zip(("val", "test"), (index.val, index.test), source.own, strict=True):
        splits.append(rows(part) if own else None if which is None else main.subset(which))
    signature = tensor_signature(features, dtypes, target, source, found, splits)
    return Splits(*splits), signature


def _names(spec: S.Spec) -> tuple[list[str], str]:
    features = [i.name for i in spec.model.inputs]
    target = next(n for n in ("y", "target", "_target", "__target__") if n not in features)
    return features, target


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Written whole or not at all: a temporary file renamed into place."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16
        tensor = tensor.float()
    return tensor.numpy()


def stored_spec(spec: S.Spec, directory: Path, write: bool = True) -> S.Spec:
    """The spec as a run directory keeps it: an `Arrays` source becomes a `kind: tensors`
    source reading .npz files in `directory` (data.npz, and val.npz / test.npz for splits
    given as their own arrays), written there unless `write` is False. Any other spec is
    returned as it is."""
    source = spec.data
    if not isinstance(source, S.Arrays):
        return spec
    from tdsl.data.base import context

    directory = Path(directory).absolute()
    features, target = _names(spec)
    files: dict[str, str | None] = {}
    parts = raw_parts(source, context(spec)) if write else {}
    for part in PARTS:
        if getattr(source, part) is None:
            files[part] = None
            continue
        files[part] = str(directory / FILES[part])
        if write:
            tensors, labels = parts[part]
            arrays = {n: _numpy(t) for n, t in zip(features, tensors, strict=False)}
            _save(directory / FILES[part], {**arrays, target: _numpy(labels)})
    stored = S.Tensors(
        file=files["train"],
        val_file=files["val"],
        test_file=files["test"],
        target_kind=source.target_kind,
        features=tuple(features),
        target=target,
        num_classes=source.num_classes,
        split=source.split,
    )
    return attrs.evolve(spec, data=stored)


__all__ = ["DataError", "prepare", "raw_parts", "stored_spec"]
