"""Meta tensors and plain shapes: what every shape rule and graph op builds on.

A meta tensor carries a shape and dtype without data; these helpers make them, broadcast
plain shapes without sympy, check dims, and construct layers on meta without running their
initializers (`SkipMetaInit`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

# A shape rule: (layer, meta input) -> meta output, or None where the rule does not apply.
Rule = Callable[[Any, torch.Tensor], Any]


def meta(shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(tuple(shape), dtype=dtype, device="meta")


def broadcast_shapes(*shapes: Sequence[int]) -> tuple[int, ...]:
    """torch's broadcasting rule on plain shapes. `torch.broadcast_shapes` does the same
    but imports sympy on its first call (about half a second of validation); like it, this
    raises RuntimeError when the shapes do not broadcast."""
    out: list[int] = []
    for shape in shapes:
        shape = tuple(shape)
        width = max(len(out), len(shape))
        left = [1] * (width - len(out)) + out
        right = (1,) * (width - len(shape)) + shape
        out = []
        for a, b in zip(left, right, strict=True):
            if a != b and 1 not in (a, b):
                raise RuntimeError(f"shapes {list(left)} and {list(right)} do not broadcast")
            out.append(b if a == 1 else a)
    return tuple(out)


def valid_dim(dim: int, rank: int) -> bool:
    """Whether torch accepts `dim` for a tensor of `rank` (a 0-d tensor takes 0 and -1)."""
    return -max(rank, 1) <= dim < max(rank, 1)


def matches_params(layer: nn.Module, x: torch.Tensor) -> bool:
    """Whether the layer's floating-point weights and statistics have the input's dtype."""
    tensors = [*layer.parameters(recurse=False), *layer.buffers(recurse=False)]
    return all(t.dtype == x.dtype for t in tensors if t.is_floating_point())


class SkipMetaInit(TorchFunctionMode):
    """Layer construction on the meta device without running initializers: they have no
    data to fill there, and some (`normal_`) would import torch's compiler stack."""

    FILLS = frozenset({"fill_", "zero_", "normal_", "uniform_"})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = args[0] if args else kwargs.get("tensor")
        initializer = getattr(func, "__module__", None) == "torch.nn.init"
        if (initializer or getattr(func, "__name__", "") in self.FILLS) and _is_meta(target):
            return target
        return func(*args, **kwargs)


def _is_meta(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.is_meta
