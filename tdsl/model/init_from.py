"""`model.init`: starting weights read from another run's checkpoint (fine-tuning).

`read_tensors` reads a run directory's checkpoint, a checkpoint file, a saved `TrainState`
or a plain state dict (name -> tensor), always with `weights_only=True`. `fit_weights`
matches them to a model's state by name: the `params` globs choose which of the model's
parameters and buffers are loaded, `map` renames checkpoint prefixes first, and what does
not match is listed (missing, unexpected, mis-shaped) for a located error before training.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from pathlib import Path

import attrs
import torch
from torch import nn

from tdsl import spec as S
from tdsl.errors import TdslError
from tdsl.model.modules import tied_aliases


class InitError(TdslError):
    """A checkpoint named by `model.init` that cannot be read."""


def checkpoint_file(path: Path, which: str | None) -> Path:
    """The file to read: a run directory's `checkpoints/<which>.pt` (default best), or
    `path` itself. Raises `InitError` when there is none."""
    if path.is_dir():
        file = path / "checkpoints" / f"{which or 'best'}.pt"
        if not file.is_file():
            raise InitError(f"the run directory {path} has no checkpoint {which or 'best'}.pt")
        return file
    if which is not None:
        raise InitError(f"which: {which} picks a run directory's checkpoint, but {path} is a file")
    if not path.is_file():
        raise InitError(f"no such file or run directory: {path}")
    return path


def read_tensors(file: Path, mmap: bool = False) -> dict[str, torch.Tensor]:
    """Name -> tensor of the weights in `file` (`mmap`: leave them on disk until read)."""
    try:
        data = torch.load(file, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # a foreign or truncated file: say which and why
        lines = str(exc).strip().splitlines()
        raise InitError(f"cannot read {file}: {lines[0] if lines else exc!r}") from None
    if isinstance(data, dict) and isinstance(data.get("state"), dict):
        data = data["state"]  # a tdsl checkpoint: {"state": TrainState.to_dict(), ...}
    if isinstance(data, dict) and isinstance(data.get("params"), dict):
        data = {**data["params"], **data.get("buffers", {})}  # a TrainState's dict
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items()
    ):
        raise InitError(
            f"{file} holds no weights tdsl can read: expected a tdsl checkpoint or a "
            "state dict (name -> tensor)"
        )
    return data


@attrs.frozen
class WeightsFit:
    """How a checkpoint's tensors meet the model's state."""

    taken: dict[str, torch.Tensor]  # model name -> checkpoint tensor, shapes agreeing
    missing: list[str]  # chosen model names the checkpoint lacks
    unexpected: list[str]  # chosen checkpoint names (after `map`) the model lacks
    misshaped: list[str]  # "name (the model's [..], the checkpoint's [..])"

    def problems(self, strict: bool) -> list[str]:
        found = [("mis-shaped", self.misshaped)]
        if strict:
            found = [("missing", self.missing), ("unexpected", self.unexpected), *found]
        return [f"{what}: {_listed(names)}" for what, names in found if names]


def _listed(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def renamed(name: str, mapping: Mapping[str, str]) -> str:
    """`name` with the longest matching `map` prefix replaced."""
    for old in sorted(mapping, key=len, reverse=True):
        if name.startswith(old):
            return mapping[old] + name[len(old) :]
    return name


def model_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's state by name as checkpoints hold it (tied aliases left out)."""
    aliases = tied_aliases(module)
    return {n: t for n, t in module.state_dict().items() if n not in aliases}


def fit_weights(
    init: S.InitFrom, wanted: Mapping[str, torch.Tensor], tensors: Mapping[str, torch.Tensor]
) -> WeightsFit:
    chosen = lambda name: any(fnmatch.fnmatchcase(name, g) for g in init.params)  # noqa: E731
    given = {renamed(k, init.map): v for k, v in tensors.items()}
    taken, missing, misshaped = {}, [], []
    for name, tensor in wanted.items():
        if not chosen(name):
            continue
        if name not in given:
            missing.append(name)
        elif tuple(given[name].shape) != tuple(tensor.shape):
            misshaped.append(
                f"{name} (the model's {list(tensor.shape)}, "
                f"the checkpoint's {list(given[name].shape)})"
            )
        else:
            taken[name] = given[name]
    unexpected = [n for n in given if chosen(n) and n not in wanted]
    return WeightsFit(taken, missing, unexpected, misshaped)


def load_taken(module: nn.Module, taken: Mapping[str, torch.Tensor]) -> None:
    """Copy the fitted tensors into `module`'s parameters and buffers, in place."""
    state = module.state_dict(keep_vars=True)
    with torch.no_grad():
        for name, value in taken.items():
            state[name].copy_(value.to(dtype=state[name].dtype))
