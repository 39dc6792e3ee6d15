"""The `init_weights` vocabulary: one entry per initializer kind, its torch function and
its arguments side by side, so adding a kind is one local change.

Each entry's `arguments` maps an argument to whether it is required; `needs_matrix` says
the kind computes fans (or an orthogonal basis) and so needs a tensor of two or more
dimensions. Initializers draw from torch's global generator, which the caller seeds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import torch
from torch import nn

# What `nonlinearity:` may name (torch.nn.init.calculate_gain's vocabulary).
NONLINEARITIES = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "selu",
)
FAN_MODES = ("fan_in", "fan_out")


@attrs.frozen
class InitDef:
    name: str
    fn: Callable[..., torch.Tensor]
    arguments: Mapping[str, bool]  # argument -> required
    doc: str
    needs_matrix: bool = False


def _kaiming(fn: Callable[..., torch.Tensor], doc: str) -> InitDef:
    return InitDef(
        fn.__name__.rstrip("_"),
        fn,
        {"a": False, "mode": False, "nonlinearity": False},
        doc,
        needs_matrix=True,
    )


_ENTRIES = (
    _kaiming(nn.init.kaiming_normal_, "He normal: std = gain / sqrt(fan) (a, mode, nonlinearity)"),
    _kaiming(nn.init.kaiming_uniform_, "He uniform: bound = gain * sqrt(3 / fan)"),
    InitDef(
        "xavier_normal",
        nn.init.xavier_normal_,
        {"gain": False},
        "Glorot normal: std = gain * sqrt(2 / (fan_in + fan_out))",
        needs_matrix=True,
    ),
    InitDef(
        "xavier_uniform",
        nn.init.xavier_uniform_,
        {"gain": False},
        "Glorot uniform: bound = gain * sqrt(6 / (fan_in + fan_out))",
        needs_matrix=True,
    ),
    InitDef(
        "orthogonal",
        nn.init.orthogonal_,
        {"gain": False},
        "a (semi-)orthogonal matrix times gain",
        needs_matrix=True,
    ),
    InitDef("normal", nn.init.normal_, {"mean": False, "std": False}, "N(mean, std^2)"),
    InitDef("uniform", nn.init.uniform_, {"a": False, "b": False}, "U(a, b)"),
    InitDef("zeros", nn.init.zeros_, {}, "all zeros"),
    InitDef("ones", nn.init.ones_, {}, "all ones"),
    InitDef("constant", nn.init.constant_, {"val": True}, "every value set to val"),
)
INITIALIZERS: dict[str, InitDef] = {entry.name: entry for entry in _ENTRIES}


def initializer_names() -> list[str]:
    return list(INITIALIZERS)


def lookup_initializer(name: str) -> InitDef | None:
    return INITIALIZERS.get(name)


def argument_problem(entry: InitDef, args: Mapping[str, Any]) -> tuple[str, str] | None:
    """(argument, what is wrong) for the first bad argument value, else None. Unknown and
    missing arguments are the caller's (`check_keywords`)."""
    for key, value in args.items():
        if key == "mode" and value not in FAN_MODES:
            return key, f"mode must be one of {', '.join(FAN_MODES)} (got {value!r})"
        if key == "nonlinearity" and value not in NONLINEARITIES:
            return key, f"nonlinearity must be one of {', '.join(NONLINEARITIES)} (got {value!r})"
        if key in ("a", "b", "gain", "mean", "std", "val"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return key, f"{key} must be a number (got {value!r})"
            if not math.isfinite(value):
                return key, f"{key} must be finite (got {value!r})"
    if "std" in args and args["std"] < 0:
        return "std", f"std must be >= 0 (got {args['std']!r})"
    if entry.name == "uniform" and args.get("a", 0.0) > args.get("b", 1.0):
        return "b", f"b must be >= a (got a={args.get('a', 0.0)!r}, b={args.get('b', 1.0)!r})"
    return None


def apply_initializer(entry: InitDef, tensor: torch.Tensor, args: Mapping[str, Any]) -> None:
    """Fill `tensor` in place (without recording gradients), drawing from the global RNG."""
    with torch.no_grad():
        entry.fn(tensor, **args)
