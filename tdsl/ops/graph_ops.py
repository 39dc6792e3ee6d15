"""Functional ops for graphs: combine, pick and reshape the values flowing between layers.

Each is a tiny parameter-free `nn.Module`, so a compiled graph stays a plain module tree.
Dimension numbers count the batch dimension as 0, as in torch; `reshape` shapes exclude it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tdsl.ops.registry import OpDef, OpError, register, shape_text, signature_arguments


def _shapes(values: Sequence[Any]) -> str:
    shown = [shape_text(v.shape) if isinstance(v, torch.Tensor) else "a tuple" for v in values]
    return ", ".join(shown)


def _tensors(values: Sequence[Any]) -> None:
    if not all(isinstance(v, torch.Tensor) for v in values):
        raise OpError(f"takes tensors, got {_shapes(values)}; pick a tuple element with 'item'")


class Add(nn.Module):
    """Sum of the inputs, plus `value` if given: `add` with one input and value=1 is 1 + x."""

    def __init__(self, value: float | None = None):
        super().__init__()
        self.value = value

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out if self.value is None else out + self.value


class Mul(nn.Module):
    """Product of the inputs, times `value` if given."""

    def __init__(self, value: float | None = None):
        super().__init__()
        self.value = value

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out if self.value is None else out * self.value


class Sub(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a - b


class Concat(nn.Module):
    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.dim)


class Stack(nn.Module):
    def __init__(self, dim: int = 1):
        super().__init__()
        self.dim = dim

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.stack(xs, dim=self.dim)


class Item(nn.Module):
    """Element `index` of a tuple output, e.g. an LSTM's output sequence (0) or state (1)."""

    def __init__(self, index: int):
        super().__init__()
        self.index = index

    def forward(self, value: tuple) -> Any:
        return value[self.index]


class Select(nn.Module):
    """`x.select(dim, index)`: index -1 on dim 1 is the last time step."""

    def __init__(self, dim: int, index: int):
        super().__init__()
        self.dim, self.index = dim, index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.select(self.dim, self.index)


class Slice(nn.Module):
    def __init__(self, dim: int, start: int | None = None, end: int | None = None, step: int = 1):
        super().__init__()
        self.dim, self.slice = dim, slice(start, end, step)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = [slice(None)] * x.dim()
        index[self.dim] = self.slice
        return x[tuple(index)]


class Transpose(nn.Module):
    def __init__(self, dim0: int, dim1: int):
        super().__init__()
        self.dim0, self.dim1 = dim0, dim1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(self.dim0, self.dim1)


class Permute(nn.Module):
    def __init__(self, dims: Sequence[int]):
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(self.dims)


class Reshape(nn.Module):
    """Reshape every sample; `shape` excludes the batch dimension and may contain one -1."""

    def __init__(self, shape: Sequence[int]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)


class Reduce(nn.Module):
    def __init__(self, how: str, dim: int | Sequence[int], keepdim: bool = False):
        super().__init__()
        self.how, self.dim, self.keepdim = how, dim, keepdim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = self.dim if isinstance(self.dim, int) else tuple(self.dim)
        if self.how == "max":
            return x.amax(dim=dim, keepdim=self.keepdim)
        return getattr(x, self.how)(dim=dim, keepdim=self.keepdim)

    def extra_repr(self) -> str:
        return f"{self.how}, dim={self.dim}, keepdim={self.keepdim}"


def _same_shapes(op: str) -> Callable[[Sequence[Any], Mapping[str, Any]], None]:
    def check(inputs: Sequence[Any], _args: Mapping[str, Any]) -> None:
        _tensors(inputs)
        try:
            torch.broadcast_shapes(*(x.shape for x in inputs))
        except RuntimeError:
            raise OpError(
                f"needs inputs of matching (broadcastable) shapes, got {_shapes(inputs)}"
            ) from None

    return check


def _concat_check(op: str) -> Callable[[Sequence[Any], Mapping[str, Any]], None]:
    def check(inputs: Sequence[Any], args: Mapping[str, Any]) -> None:
        _tensors(inputs)
        dim = args.get("dim", -1 if op == "concat" else 1)
        shapes = [list(x.shape) for x in inputs]
        if len({len(s) for s in shapes}) != 1:
            raise OpError(f"needs inputs of equal rank, got {_shapes(inputs)}")
        rank = len(shapes[0]) + (1 if op == "stack" else 0)
        if not -rank <= dim < rank:
            raise OpError(f"dim {dim} is out of range for rank-{rank} inputs", key="dim")
        for position in range(len(shapes[0])):
            if op == "concat" and position == dim % len(shapes[0]):
                continue
            if len({s[position] for s in shapes}) != 1:
                raise OpError(
                    f"along dim {dim} needs the other dimensions to match, got {_shapes(inputs)}"
                )

    return check


def _functional(
    name: str,
    cls: type[nn.Module],
    min_inputs: int = 1,
    max_inputs: int | None = 1,
    check: Callable[..., None] | None = None,
    doc: str = "",
) -> None:
    def build(args: Mapping[str, Any], inputs: Sequence[Any]) -> nn.Module:
        if check is not None:
            check(inputs, args)
        return cls(**args)

    register(
        OpDef(
            name,
            build,
            signature_arguments(cls),
            min_inputs=min_inputs,
            max_inputs=max_inputs,
            doc=doc or (cls.__doc__ or "").strip(),
        )
    )


_functional("add", Add, 1, None, _same_shapes("add"))
_functional("mul", Mul, 1, None, _same_shapes("mul"))
_functional("sub", Sub, 2, 2, _same_shapes("sub"), doc="The first input minus the second.")
_functional("concat", Concat, 2, None, _concat_check("concat"), doc="torch.cat along dim.")
_functional("stack", Stack, 2, None, _concat_check("stack"), doc="torch.stack along dim.")


def _item_check(inputs: Sequence[Any], args: Mapping[str, Any]) -> None:
    value = inputs[0]
    if isinstance(value, torch.Tensor):
        raise OpError(
            f"picks an element of a tuple output, but its input is a tensor "
            f"{shape_text(value.shape)}",
            hint="to index a tensor, use select or slice",
        )
    index = args.get("index")
    if isinstance(index, int) and not -len(value) <= index < len(value):
        raise OpError(f"index {index} is out of range for a tuple of {len(value)}", key="index")


_functional("item", Item, check=_item_check)
_functional("select", Select)
_functional("slice", Slice, doc="x[..., start:end:step, ...] along dim.")
_functional("transpose", Transpose, doc="Swap two dimensions.")
_functional("permute", Permute, doc="Reorder all dimensions (batch included).")
_functional("reshape", Reshape)
for _how in ("mean", "sum", "max"):
    register(
        OpDef(
            _how,
            lambda args, inputs, how=_how: Reduce(how, **args),
            {"dim": True, "keepdim": False},
            doc=f"{_how} over dim(s)",
        )
    )
