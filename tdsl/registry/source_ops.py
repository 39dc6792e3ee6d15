"""Values with no batch of their own: learned tensors, constants and position indices.

Their outputs have exactly the shape written (positions: [1, T]), so a leading 1 makes them
broadcast against batched values: `add` and `mul` broadcast, and `concat`/`stack` expand a
leading 1 to the batch. `parameter` and `constant` take no inputs; in the sequential form
they do not consume the layer before them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tdsl.registry import op_checks as check
from tdsl.registry.meta_tensors import meta
from tdsl.registry.ops import DTYPES, OpDef, OpError, register, shape_text
from tdsl.registry.tensor_ops import dtype_arg
from tdsl.wording import did_you_mean, show


class Positions(nn.Module):
    """[1, T] int64 indices offset, offset + 1, ... along `dim` of the input."""

    meta_any_dtype = True  # ids are integers

    def __init__(self, dim: int = 1, offset: int = 0):
        super().__init__()
        self.dim, self.offset = dim, offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        end = self.offset + x.shape[self.dim]
        return torch.arange(self.offset, end, device=x.device).unsqueeze(0)

    def meta_output(self, x: torch.Tensor) -> torch.Tensor:
        return meta((1, x.shape[self.dim]), torch.int64)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, offset={self.offset}"


def _build_positions(args: Mapping[str, Any], inputs: Sequence[Any]) -> nn.Module:
    (x,) = check.tensors(inputs)
    if x.dim() < 2:
        raise OpError(f"needs an input with steps after the batch, got {shape_text(x.shape)}")
    dim = check.dim_arg(args, "dim", 1, x.dim())
    if dim == 0:
        raise OpError("counts along dim 0, the batch; positions run along dim 1 or later", "dim")
    return Positions(dim, check.integer(args, "offset", 0))


_INITS = {"normal": ("mean", "std"), "uniform": ("low", "high"), "zeros": (), "ones": ()}


class LearnedTensor(nn.Module):
    """A learned tensor `value` of exactly `shape` (a class token, a position table)."""

    def __init__(self, shape: Sequence[int], init: str = "normal", **how: float):
        super().__init__()
        self.value = nn.Parameter(torch.empty(tuple(shape)))
        if init == "normal":
            nn.init.normal_(self.value, how.get("mean", 0.0), how.get("std", 0.02))
        elif init == "uniform":
            nn.init.uniform_(self.value, how.get("low", 0.0), how.get("high", 1.0))
        else:
            getattr(nn.init, f"{init}_")(self.value)

    def forward(self) -> torch.Tensor:
        return self.value

    def meta_output(self) -> torch.Tensor:
        return meta(self.value.shape, self.value.dtype)

    def extra_repr(self) -> str:
        return f"shape={list(self.value.shape)}"


def _shape_arg(args: Mapping[str, Any]) -> tuple[int, ...]:
    shape = args["shape"]
    if (
        not isinstance(shape, tuple | list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
    ):
        raise OpError(
            f"takes shape a list of positive sizes, got {show(shape)}",
            key="shape",
            hint="write a leading 1 to broadcast against the batch, e.g. [1, 1, 768]",
        )
    return shape


def _build_parameter(args: Mapping[str, Any], inputs: Sequence[Any]) -> nn.Module:
    shape = _shape_arg(args)
    init = args.get("init", "normal")
    if init not in _INITS:
        hint = did_you_mean(init, _INITS) if isinstance(init, str) else None
        raise OpError(f"has unknown init {show(init)}", key="init", hint=hint)
    how = {}
    for key in ("mean", "std", "low", "high"):
        if key in args:
            if key not in _INITS[init]:
                owner = next(name for name, keys in _INITS.items() if key in keys)
                raise OpError(f"takes {key} only with init {owner}, not {init}", key=key)
            how[key] = check.number(args, key, None)
    # Initializers are skipped on meta, so torch would refuse these only at compile time.
    if how.get("std", 0.0) < 0:
        raise OpError(f"takes std >= 0, got {show(how['std'])}", key="std")
    low, high = how.get("low", 0.0), how.get("high", 1.0)
    if low > high:
        raise OpError(f"takes low <= high, got {show(low)} > {show(high)}", key="low")
    return LearnedTensor(shape, init, **how)


def _nested_shape(value: Any) -> tuple[int, ...] | None:
    """The shape of a number or a rectangular nested list of numbers, else None."""
    if isinstance(value, int | float):  # bool too
        return ()
    if not isinstance(value, tuple | list):
        return None
    inner = [_nested_shape(v) for v in value]
    if any(s is None for s in inner) or len(set(inner)) > 1:
        return None
    return (len(value), *(inner[0] if inner else ()))


class Constant(nn.Module):
    """A fixed tensor, a buffer `value` saved with the parameters."""

    def __init__(self, value: Any, dtype: str = "float32"):
        super().__init__()
        self.register_buffer("value", torch.tensor(value, dtype=DTYPES[dtype]))

    def forward(self) -> torch.Tensor:
        return self.value

    def meta_output(self) -> torch.Tensor:
        return meta(self.value.shape, self.value.dtype)

    def extra_repr(self) -> str:
        return f"shape={list(self.value.shape)}"


def _build_constant(args: Mapping[str, Any], inputs: Sequence[Any]) -> nn.Module:
    value, dtype = args["value"], dtype_arg(args, "float32")
    shape = _nested_shape(value)
    if shape is None:
        raise OpError(
            f"takes value a number or a nested list of numbers of one shape, got {show(value)}",
            key="value",
        )
    try:
        return Constant(value, dtype)
    except (RuntimeError, OverflowError, ValueError):
        raise OpError(
            f"cannot hold value {show(value)} as {dtype}: a number is outside its range",
            key="value",
            hint="use a wider dtype (int64, float64) or smaller numbers",
        ) from None


register(
    OpDef(
        "positions",
        _build_positions,
        {"dim": False, "offset": False},
        doc="[1, T] int64 indices along dim (1) of the input, from offset (0)",
        batch="broadcast",
    )
)
register(
    OpDef(
        "parameter",
        _build_parameter,
        {"shape": True, "init": False, "mean": False, "std": False, "low": False, "high": False},
        min_inputs=0,
        max_inputs=0,
        doc="a learned tensor `value` of exactly shape (write a leading 1); init normal std 0.02",
        batch="broadcast",
    )
)
register(
    OpDef(
        "constant",
        _build_constant,
        {"value": True, "dtype": False},
        min_inputs=0,
        max_inputs=0,
        doc="a fixed tensor (buffer `value`) from a number or nested list; dtype float32",
        batch="broadcast",
    )
)
