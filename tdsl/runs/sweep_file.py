"""`tdsl sweep --config FILE`: a sweep's options written down, in the file's `sweep:` section.

    sweep:
      grid: {optimizer.lr: [1e-3, 1e-2], train.batch_size: [32, 64]}
      params:           # block style: in {...} the comma of (2,16) would split the mapping
        model.layers[0].out_features: int_uniform(2,16)
      random: 4          # or: search: tpe, trials: 20, monitor: val_accuracy, mode: max
      seed: 0
      parallel: 2
      set: [train.epochs=5]

Each key is the command-line option of the same name; lists given on the command line
(`--grid`, `--param`, `--set`) are added to the file's, and single options given there win.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tdsl.errors import SpecError
from tdsl.runs.distributions import SweepError, as_text
from tdsl.spec.located_yaml import parse, read_text
from tdsl.wording import did_you_mean

_SINGLE = {"random": int, "seed": int, "parallel": int, "trials": int, "search": str,
           "monitor": str, "mode": str}  # fmt: skip
_KEYS = ("grid", "params", "set", *_SINGLE)


def read_sweep_file(path: Path) -> dict[str, Any]:
    """The `sweep:` section of `path`, its keys checked; problems raise SweepError (or
    SpecError for YAML that does not parse)."""
    try:
        text = read_text(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    data, source, problems = parse(text, str(path))
    if problems:
        raise SpecError(problems)
    section = data.get("sweep") if isinstance(data, dict) else None
    if not isinstance(section, dict):
        raise SweepError(f"{path}: expected a `sweep:` mapping of sweep options")
    for key, value in section.items():
        where = source.locate(("sweep", key))
        at = f"{where.file}:{where.line}:{where.column}: sweep.{key}"
        if key not in _KEYS:
            hint = did_you_mean(str(key), _KEYS)
            raise SweepError(f"{at}: unknown option {key!r}" + (f" ({hint})" if hint else ""))
        if key == "grid" and not (
            isinstance(value, dict) and all(isinstance(v, list) and v for v in value.values())
        ):
            raise SweepError(f"{at}: expected a mapping of PATH: [values]")
        if key == "params" and not (
            isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
        ):
            raise SweepError(f"{at}: expected a mapping of PATH: DISTRIBUTION(...)")
        if key == "set" and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            raise SweepError(f"{at}: expected a list of PATH=VALUE")
        wanted = _SINGLE.get(key)
        if wanted is not None and (not isinstance(value, wanted) or isinstance(value, bool)):
            raise SweepError(f"{at}: expected {'a number' if wanted is int else 'a name'}")
    return section


def apply_sweep_file(path: Path, args: argparse.Namespace) -> None:
    """Fill `args` from the file: the command line's lists add to it, its options win."""
    section = read_sweep_file(path)
    grid = [f"{k}={','.join(as_text(v) for v in vs)}" for k, vs in section.get("grid", {}).items()]
    args.grid = grid + args.grid
    args.param = [f"{k}={v}" for k, v in section.get("params", {}).items()] + args.param
    args.set = list(section.get("set", [])) + args.set
    defaults = {"seed": 0, "parallel": 1, "mode": "auto"}
    for key in _SINGLE:
        if key in section and getattr(args, key) in (None, defaults.get(key)):
            setattr(args, key, section[key])
