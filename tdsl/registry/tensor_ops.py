"""Tensor ops for writing attention and friends by hand: matmul, softmax with a mask, abs and
cast. Parameter-free modules with their own shape rules (`meta_output`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tdsl.registry import op_checks as check
from tdsl.registry.meta_tensors import broadcast_shapes, meta
from tdsl.registry.ops import DTYPES, OpDef, OpError, register, shape_text
from tdsl.wording import did_you_mean, show


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def matmul_shape(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    """torch.matmul's output shape for inputs of these shapes, or an OpError saying why not."""
    shown = f"{shape_text(a)} by {shape_text(b)}"
    if not a or not b:
        raise OpError(f"cannot multiply {shown}: matmul needs at least one dimension each")
    left = (1, *a) if len(a) == 1 else tuple(a)
    right = (*b, 1) if len(b) == 1 else tuple(b)
    if left[-1] != right[-2]:
        raise OpError(
            f"cannot multiply {shown}: the first's last size {left[-1]} is not "
            f"the second's {'size' if len(b) == 1 else 'second-to-last size'} {right[-2]}"
        )
    try:
        batch = tuple(broadcast_shapes(left[:-2], right[:-2]))
    except RuntimeError:
        raise OpError(f"cannot multiply {shown}: the leading dimensions do not broadcast") from None
    rows = (left[-2],) if len(a) > 1 else ()  # a vector's added dimension is dropped again
    columns = (right[-1],) if len(b) > 1 else ()
    return (*batch, *rows, *columns)


class Matmul(nn.Module):
    """torch.matmul(a, b), batch dimensions broadcasting."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)

    def meta_output(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return meta(matmul_shape(a.shape, b.shape), a.dtype)


def _build_matmul(args: Mapping[str, Any], inputs: Sequence[Any]) -> nn.Module:
    a, b = check.tensors(inputs)
    matmul_shape(a.shape, b.shape)
    if a.dtype != b.dtype or a.dtype == torch.bool:
        kinds = f"{_dtype_name(a.dtype)} and {_dtype_name(b.dtype)}"
        raise OpError(f"needs two inputs of one numeric dtype, got {kinds}")
    return Matmul()


class MaskedSoftmax(nn.Module):
    """Softmax over `dim` where the mask is True; masked positions get probability 0, and a
    row masked everywhere gives zeros (not NaN). A [B, N] mask for a higher-rank input is a
    padding mask along `dim` (N its size there)."""

    meta_any_dtype = True

    def __init__(self, dim: int, padding_rank: int | None = None):
        super().__init__()
        self.dim, self.padding_rank = dim, padding_rank

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask.bool()
        if self.padding_rank is not None:
            shape = [1] * self.padding_rank
            shape[0], shape[self.dim] = keep.shape
            keep = keep.view(shape)
        y = x.masked_fill(~keep, float("-inf")).softmax(self.dim)
        return y.masked_fill(~keep, 0.0)  # a row with no True is NaN before this

    def meta_output(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return meta(x.shape, x.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


def _build_softmax(args: Mapping[str, Any], inputs: Sequence[Any]) -> nn.Module:
    if len(inputs) == 1:
        return nn.Softmax(dim=args.get("dim", -1))
    x, mask = check.tensors(inputs)
    if not x.is_floating_point() or mask.is_floating_point():
        kinds = f"{_dtype_name(x.dtype)} and {_dtype_name(mask.dtype)}"
        raise OpError(f"takes floating-point scores and a bool or 0/1 integer mask, got {kinds}")
    dim = check.dim_arg(args, "dim", -1, max(x.dim(), 1))
    padding = mask.dim() == 2 < x.dim() and dim != 0
    if padding and tuple(mask.shape) == (x.shape[0], x.shape[dim]):
        return MaskedSoftmax(dim, x.dim())
    try:
        fits = broadcast_shapes(x.shape, mask.shape) == x.shape
    except RuntimeError:
        fits = False
    if not fits or mask.dim() != x.dim():
        raise OpError(
            f"needs a mask of its input's rank that broadcasts to {shape_text(x.shape)}, or "
            f"[B, {x.shape[dim]}] along dim {dim}; got {shape_text(mask.shape)}",
            key="inputs",
        )
    return MaskedSoftmax(dim)


class Abs(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.abs(x)

    def meta_output(self, x: torch.Tensor) -> torch.Tensor:
        return meta(x.shape, x.dtype)


class Cast(nn.Module):
    """x.to(dtype)."""

    meta_any_dtype = True

    def __init__(self, dtype: str):
        super().__init__()
        self.to_dtype = DTYPES[dtype]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.to_dtype)

    def meta_output(self, x: torch.Tensor) -> torch.Tensor:
        return meta(x.shape, self.to_dtype)

    def extra_repr(self) -> str:
        return _dtype_name(self.to_dtype)


def dtype_arg(args: Mapping[str, Any], default: str | None = None) -> str:
    value = args.get("dtype", default)
    if value not in DTYPES:
        hint = did_you_mean(value, DTYPES) if isinstance(value, str) else None
        raise OpError(
            f"has unknown dtype {show(value)}",
            key="dtype",
            hint=hint or "expected one of: " + ", ".join(DTYPES),
        )
    return value


def _build_cast(args: Mapping[str, Any], inputs: Sequence[Any]) -> nn.Module:
    check.tensors(inputs)
    return Cast(dtype_arg(args))


register(OpDef("matmul", _build_matmul, {}, min_inputs=2, max_inputs=2, doc="torch.matmul(a, b)"))
register(
    OpDef(
        "softmax",
        _build_softmax,
        {"dim": False},
        max_inputs=2,
        doc="softmax over dim (-1); optional 2nd input: mask, False positions get 0",
    )
)
register(OpDef("abs", lambda args, inputs: Abs(), {}, doc="|x|"))
register(OpDef("cast", _build_cast, {"dtype": True}, doc="x.to(dtype)"))
