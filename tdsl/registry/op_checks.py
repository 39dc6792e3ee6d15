"""Argument and input checks shared by the attention, tensor and source ops.

Each raises `OpError` naming the argument, so the message is located at the value written.
tdsl has one mask convention everywhere: True (or 1) marks a real token that may be attended
to, False (or 0) a padding position.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from tdsl.registry.ops import OpError, shape_text
from tdsl.wording import show


def flag(args: Mapping[str, Any], key: str, default: bool = False) -> bool:
    value = args.get(key, default)
    if not isinstance(value, bool):
        raise OpError(f"takes {key} true or false, got {show(value)}", key=key)
    return value


def integer(
    args: Mapping[str, Any], key: str, default: int | None = None, least: int | None = 0
) -> int:
    """An integer argument of at least `least` (any with None; required without default)."""
    value = args.get(key, default)
    low = value if least is None else least
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        wanted = {None: "an integer", 1: "a positive integer"}.get(least, f"an integer >= {least}")
        raise OpError(f"takes {key} {wanted}, got {show(value)}", key=key)
    return value


def number(args: Mapping[str, Any], key: str, default: float | None) -> float | None:
    value = args.get(key, default)
    if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
        raise OpError(f"takes {key} a number, got {show(value)}", key=key)
    return value


def tensors(inputs: Sequence[Any]) -> list[torch.Tensor]:
    if not all(isinstance(v, torch.Tensor) for v in inputs):
        raise OpError("takes tensors, got a tuple; pick a tuple element with op 'item'")
    return list(inputs)


def dim_arg(args: Mapping[str, Any], key: str, default: int, rank: int) -> int:
    """A dimension argument valid for a rank-`rank` input, as a non-negative index."""
    value = args.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not -rank <= value < rank:
        raise OpError(f"takes {key} in [{-rank}, {rank - 1}] for its rank-{rank} input", key=key)
    return value % rank


def padding_mask(mask: torch.Tensor, batch: int, length: int, of: torch.Tensor) -> None:
    """A mask input must be [batch, length], bool or integer: True/1 = a real token."""
    if mask.is_floating_point() or mask.is_complex():
        raise OpError(
            f"takes a mask of bool or 0/1 integers, got {str(mask.dtype).removeprefix('torch.')}",
            key="inputs",
            hint="make one from token ids with op padding_mask",
        )
    if tuple(mask.shape) != (batch, length):
        raise OpError(
            f"needs its mask shaped {shape_text((batch, length))} for input "
            f"{shape_text(of.shape)}, got {shape_text(mask.shape)}",
            key="inputs",
        )
