"""`tdsl.load_model(RUN_DIR)`: a trained run ready for inference in another program — its
module with the checkpoint's weights, the fitted transforms, and output decoding.

`tdsl predict` is built on it, so the command line and the API give the same answers.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from torch import nn

from tdsl.data import DataError, Fitted, read_input
from tdsl.data.base import context
from tdsl.data.raw_rows import features_from_rows
from tdsl.registry.ops import DTYPES
from tdsl.runs.data_cache import run_data_cache
from tdsl.runs.decode import OutputDecoder, decode, decoders
from tdsl.runs.directories import RunError, _program_and_state
from tdsl.runs.recorded_data import run_signature
from tdsl.train.loops import predict
from tdsl.train.program import Program
from tdsl.train.state import TrainState


@attrs.frozen
class Predictions:
    """Decoded predictions: `columns` maps a column name to one value per row (numbers, or
    class names); `outputs` are the model's raw outputs (a tensor, or a tuple of them)."""

    columns: dict[str, np.ndarray]
    outputs: Any

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per row, with plain Python values."""
        names = list(self.columns)
        values = [self.columns[n].tolist() for n in names]
        return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]


@attrs.frozen
class LoadedModel:
    """A run's checkpoint, ready to predict. `predict(rows)` takes rows as the run's data
    source reads them (see `features`) and returns `Predictions`."""

    directory: Path
    program: Program
    state: TrainState
    fitted: Fitted | None
    decoders: tuple[OutputDecoder, ...]

    @property
    def spec(self):
        return self.program.spec

    def module(self) -> nn.Module:
        """A standalone `nn.Module` holding the checkpoint's weights, in eval mode."""
        return self.program.module_for(self.state).eval()

    def features(self, rows: Any, where: str = "the rows") -> tuple[torch.Tensor, ...]:
        """The model's inputs for `rows`: a file path (read as `tdsl predict --input` does),
        CSV rows (a list of dicts or a mapping of column -> cells), texts, image paths, or
        arrays/tensors as the model takes them (a tuple or list of them for several inputs).
        Raises `RunError` for rows that do not fit the model."""
        spec = self.spec
        try:
            if isinstance(rows, str | os.PathLike):
                where = str(rows)
                found = read_input(spec, self.fitted, Path(rows))
                found = found if found is not None else read_array_file(Path(rows))
            else:
                found = features_from_rows(spec.data, context(spec), self.fitted, rows)
                found = found if found is not None else _arrays(rows)
        except DataError as exc:
            raise RunError(f"cannot use input {where}: {exc.problems[0].message}") from None
        return checked_features(spec, found, where)

    def outputs(self, features: Sequence[torch.Tensor]) -> Any:
        """The model's raw outputs for ready-made `features` (on the CPU)."""
        return predict(self.program, self.state, features)

    def predict(self, rows: Any, threshold: float = 0.5) -> Predictions:
        """Decoded predictions for raw `rows` (see `features`); `threshold` is where a binary
        probability becomes label 1."""
        outputs = self.outputs(self.features(rows))
        return Predictions(decode(self.decoders, outputs, threshold), outputs)


def load_model(
    directory: str | os.PathLike, which: str = "best", allow_imports: Sequence[str] = ()
) -> LoadedModel:
    """The run in `directory` at its `which` checkpoint ("best" or "last"), ready for
    `.predict(rows)`."""
    if which not in ("best", "last"):
        raise RunError(f"which must be 'best' or 'last', not {which!r}")
    directory = Path(directory)
    program, state = _program_and_state(directory, which, allow_imports)
    try:
        fitted = Fitted.load(directory)
    except DataError as exc:
        raise RunError(exc.problems[0].message) from None
    with run_data_cache(directory, write=False), run_signature(directory, program.spec):
        found = decoders(program.spec, fitted, program.class_dim, allow_imports)
    return LoadedModel(directory, program, state, fitted, found)


def _arrays(rows: Any) -> tuple[torch.Tensor, ...]:
    if isinstance(rows, torch.Tensor | np.ndarray):
        return (_tensor(rows, "the rows"),)
    if (
        isinstance(rows, tuple | list)
        and rows
        and all(isinstance(r, torch.Tensor | np.ndarray) for r in rows)
    ):
        return tuple(_tensor(r, f"input {i}") for i, r in enumerate(rows))
    try:
        return (_tensor(np.asarray(rows), "the rows"),)
    except (ValueError, TypeError):
        raise RunError(
            "rows are a file path, arrays or tensors, or rows of the data source's kind "
            f"(not {type(rows).__name__})"
        ) from None


def _tensor(value: Any, where: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if value.dtype.kind not in "biuf":  # strings, objects, dates: not model inputs
        raise RunError(f"{where} holds {value.dtype} values; the model takes numbers")
    return torch.from_numpy(np.ascontiguousarray(value))


def read_array_file(path: Path) -> tuple[torch.Tensor, ...]:
    """Rows as the model takes them, from .npy, .npz, .pt (a tensor or a list of them) or a
    CSV of numbers without a header."""
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz", ".pt", ".csv"):
        raise RunError(f"unsupported input format {suffix!r}; use .npy, .npz, .pt or .csv")
    if not path.is_file():
        what = "no such file" if not path.exists() else "not a regular file"
        raise RunError(f"cannot read input {path}: {what}")
    where = str(path)
    try:
        if suffix == ".npy":
            return (_tensor(np.load(path, allow_pickle=False), where),)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                return tuple(_tensor(arrays[k], f"{where}[{k}]") for k in arrays.files)
        if suffix == ".pt":
            loaded = torch.load(path, map_location="cpu", weights_only=True)
            items = tuple(loaded) if isinstance(loaded, list | tuple) else (loaded,)
            if not items or not all(isinstance(t, torch.Tensor) for t in items):
                raise RunError(
                    f"{path} holds {_what(loaded)}; a .pt input holds a tensor or a list of them"
                )
            return items
        return (torch.from_numpy(_numbers_csv(path)),)
    except RunError:
        raise
    except Exception as exc:  # numpy and torch raise many kinds for a broken file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RunError(f"cannot read input {path}: {reason}") from None


def _numbers_csv(path: Path) -> np.ndarray:
    """A CSV of numbers; a first line that is not numbers is taken for a header."""
    with warnings.catch_warnings():  # an empty file is "no rows", said once, below
        warnings.simplefilter("ignore", UserWarning)
        try:
            return np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float32)
        except ValueError:
            values = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float32, skiprows=1)
    return values


def _what(value: Any) -> str:
    if isinstance(value, list | tuple):
        return f"a {type(value).__name__} of {len(value)} item(s), not all tensors"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def checked_features(
    spec: Any, features: tuple[torch.Tensor, ...], where: str
) -> tuple[torch.Tensor, ...]:
    """`features` cast to the model's input dtypes, after checking their count, shapes and
    that there are rows at all."""
    declared = spec.model.inputs
    if features and all(t.dim() > 0 and len(t) == 0 for t in features):
        raise RunError(f"{where} holds no rows to predict")
    if len(features) != len(declared):
        raise RunError(f"the model takes {len(declared)} input(s), {where} holds {len(features)}")
    for item, tensor in zip(declared, features, strict=True):
        if tensor.dim() == 0 or tuple(tensor.shape[1:]) != item.shape:
            shape = list(tensor.shape[1:]) if tensor.dim() else "a single number"
            raise RunError(
                f"input {item.name!r} expects rows of shape {list(item.shape)}, {where} has {shape}"
            )
        if tensor.dtype in (torch.bool,) or tensor.is_complex():
            raise RunError(f"{where} holds {tensor.dtype} values; the model takes numbers")
    if len(features[0]) == 0:
        raise RunError(f"{where} holds no rows to predict")
    return tuple(t.to(DTYPES[i.dtype]) for t, i in zip(features, declared, strict=True))
