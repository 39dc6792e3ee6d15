"""Data made by your own code (`kind: python`): a factory, named by import path, returns arrays.

The factory is imported only under an allowed prefix, like user layers and losses
(`tdsl.imports`). It is called with the spec's `args` as keywords, plus `seed=` the spec's
seed when it has a `seed` parameter, and returns either

- a mapping of named arrays, of which `features` (one per model input) and `target` are used;
- or a `(features, target)` tuple, whose features are one array or a list of arrays.

Arrays are numpy arrays, tensors, or anything `numpy.asarray` reads as numbers, one row per
sample. The rows are split with the spec's seed; nothing is fitted. A refused or failing
import, a factory that raises, and a result of the wrong shape are problems located at
`data.factory` (or the array's own key), never a traceback. One call per source and seed is
cached, so validating, compiling and loading call the factory once.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from tdsl import spec as S
from tdsl.data.base import (
    Context,
    DataError,
    DataSignature,
    Problems,
    tensor_signature,
)
from tdsl.data.files import _cast, _target
from tdsl.data.finite import check_finite
from tdsl.data.tensors import Splits, TensorData, split_index, split_rows
from tdsl.errors import SpecPath
from tdsl.registry.user_code import ImportRefused, import_object, is_import_path
from tdsl.spec.frozen import thaw
from tdsl.wording import did_you_mean, show

FACTORY: SpecPath = ("factory",)
RETURNS = "a mapping of named arrays or a (features, target) tuple"


def prepare(
    source: S.PythonData, ctx: Context, allow_imports: Sequence[str] = ()
) -> tuple[Splits, DataSignature]:
    """(Splits, DataSignature) of the factory's arrays; raises `DataError`. The factory is
    imported only if its prefix is in `allow_imports`."""
    return _prepared(source, ctx, _factory(source.factory, allow_imports))


def clear_cache() -> None:
    _prepared.cache_clear()


def _factory(path: str, allow_imports: Sequence[str]) -> Callable[..., Any]:
    if not is_import_path(path):
        raise DataError.at(
            FACTORY,
            f"{show(path)} is not an import path",
            "name a function as package.module.function",
        )
    try:
        found = import_object(path, allow_imports)
    except ImportRefused as exc:
        raise DataError.at(FACTORY, exc.message, exc.hint) from None
    if not callable(found):
        raise DataError.at(FACTORY, f"{show(path)} is not callable ({type(found).__name__})")
    return found


def _takes_seed(factory: Callable[..., Any]) -> bool:
    try:
        parameter = inspect.signature(factory).parameters.get("seed")
    except (TypeError, ValueError):  # builtins without a signature
        return False
    return parameter is not None and parameter.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


# Keyed by the factory object too, so a reloaded module's new function is called afresh.
@functools.lru_cache(maxsize=4)
def _prepared(
    source: S.PythonData, ctx: Context, factory: Callable[..., Any]
) -> tuple[Splits, DataSignature]:
    name = show(source.factory)
    kwargs = thaw(source.args)
    if "seed" not in kwargs and _takes_seed(factory):
        kwargs["seed"] = ctx.seed
    try:
        made = factory(**kwargs)
    except Exception as exc:  # the user's code failed: say where and why, in one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DataError.at(
            FACTORY,
            f"factory {name} raised {type(exc).__name__}" + (f": {reason}" if reason else ""),
        ) from None
    problems = Problems()
    named = _named_arrays(source, made, name, problems)
    problems.check()
    tensors = {
        label: _tensor(value, path, label, problems) for label, (path, value) in named.items()
    }
    problems.check()
    for label, (path, _) in named.items():
        check_finite(tensors[label], f"array {label} from factory {name}", path, problems)
    problems.check()
    counts = {label: int(t.shape[0]) for label, t in tensors.items()}
    if len(set(counts.values())) > 1:
        shown = ", ".join(f"{label} {count}" for label, count in counts.items())
        problems.add(FACTORY, f"factory {name} returned arrays of different lengths: {shown}")
    elif not any(counts.values()):
        problems.add(FACTORY, f"factory {name} returned no rows")
    problems.check()
    *features, target_array = tensors.values()
    target = _target(source, target_array, f"the target from factory {name}", problems)
    found = None
    if target is not None and source.target_kind == "class":
        found = int(target.max()) + 1
        if source.num_classes is not None and found > source.num_classes:
            problems.add(
                ("num_classes",),
                f"the labels go up to {found - 1}, num_classes is {source.num_classes}",
            )
    if source.num_classes is not None and source.target_kind != "class":
        problems.add(("num_classes",), "num_classes applies to class targets")
    problems.check()  # so the target is there: _target reports a problem when it is not
    return _split(source, ctx, features, target, found)


def _named_arrays(
    source: S.PythonData, made: Any, name: str, problems: Problems
) -> dict[str, tuple[SpecPath, Any]]:
    """label -> (where the spec names it, value): the features in order, then the target."""
    if isinstance(made, Mapping):
        named = {}
        wanted = [(("features", i), n) for i, n in enumerate(source.features)]
        for path, key in [*wanted, (("target",), source.target)]:
            if key in made:
                named[repr(key)] = (path, made[key])
            else:
                hint = did_you_mean(key, [str(k) for k in made])
                problems.add(path, f"factory {name} returned no array {show(key)}", hint)
        names = [*source.features, source.target]
        if len(set(names)) < len(names):
            problems.add(("features",), "an array is named twice among the features and target")
        return named
    if isinstance(made, tuple | list) and len(made) == 2:
        features, target = made
        if not isinstance(features, tuple | list):
            features = [features]
        named = {f"features[{i}]": (FACTORY, value) for i, value in enumerate(features)}
        return {**named, "target": (FACTORY, target)}
    what = f"a {type(made).__name__}"
    if isinstance(made, tuple | list):
        what += f" of {len(made)} items"
    problems.add(FACTORY, f"factory {name} returned {what}; expected {RETURNS}")
    return {}


def _tensor(value: Any, path: SpecPath, label: str, problems: Problems) -> torch.Tensor:
    """`value` as a CPU tensor of numbers with a row dimension, or a problem reported."""
    empty = torch.zeros(0)
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        if tensor.is_complex():
            problems.add(path, f"array {label} holds {tensor.dtype}, not real numbers")
            return empty
    else:
        try:
            array = np.array(value)  # a copy: the cached rows must not change under us
        except Exception:  # ragged lists and the like
            problems.add(path, f"array {label} is not an array: its rows differ in length or kind")
            return empty
        if array.dtype.kind not in "biuf":
            problems.add(path, f"array {label} holds {array.dtype}, not numbers")
            return empty
        tensor = torch.from_numpy(array)
    if tensor.dim() == 0:
        problems.add(path, f"array {label} is a single number, not one row per sample")
        return empty
    return tensor


def _split(
    source: S.PythonData,
    ctx: Context,
    features: list[torch.Tensor],
    target: torch.Tensor,
    found_classes: int | None,
) -> tuple[Splits, DataSignature]:
    wanted = [i.dtype for i in ctx.inputs]
    if len(wanted) != len(features):
        wanted = [None] * len(features)
    dtypes = [
        _cast(str(f.dtype).removeprefix("torch."), w) for f, w in zip(features, wanted, strict=True)
    ]
    rows = TensorData(tuple(f.to(d) for f, d in zip(features, dtypes, strict=True)), target)
    strata = target.reshape(len(target), -1)[:, 0].long() if source.split.stratify else None
    generator = torch.Generator().manual_seed(ctx.seed)
    train, val, test = split_rows(rows, split_index(len(target), source.split, generator, strata))
    splits = (train, val, test)
    signature = tensor_signature(features, dtypes, target, source, found_classes, splits)
    return Splits(*splits), signature
