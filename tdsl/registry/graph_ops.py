"""Functional ops for graphs: combine, pick and reshape the values flowing between layers.

Each is a tiny parameter-free `nn.Module`, so a compiled graph stays a plain module tree.
Dimension numbers count the batch dimension as 0, as in torch; `reshape` shapes exclude it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tdsl.registry.meta_tensors import broadcast_shapes, meta, valid_dim
from tdsl.registry.ops import OpDef, OpError, register, shape_text, signature_arguments


def _shapes(values: Sequence[Any]) -> str:
    shown = [shape_text(v.shape) if isinstance(v, torch.Tensor) else "a tuple" for v in values]
    return ", ".join(shown)


def _promoted(xs: Sequence[torch.Tensor]) -> torch.dtype:
    return functools.reduce(torch.promote_types, (x.dtype for x in xs))


class _Elementwise(nn.Module):
    """Inputs combined element by element, with broadcasting."""

    def meta_output(self, *xs: torch.Tensor) -> torch.Tensor:
        """The output on meta inputs, without running the op (see tdsl.shapes). The dtype
        follows forward's chain of binary ops: a 0-d input (or the scalar `value`) does
        not promote a higher-dimensional one of the same kind (float32 + float64 0-d is
        float32)."""
        out = xs[0]
        for x in xs[1:]:
            out = meta(broadcast_shapes(out.shape, x.shape), torch.result_type(out, x))
        value = getattr(self, "value", None)
        return out if value is None else meta(out.shape, torch.result_type(out, value))


def _tensors(values: Sequence[Any]) -> None:
    if not all(isinstance(v, torch.Tensor) for v in values):
        raise OpError(f"takes tensors, got {_shapes(values)}; pick a tuple element with 'item'")


class Add(_Elementwise):
    """Sum of the inputs, plus `value` if given: `add` with one input and value=1 is 1 + x."""

    def __init__(self, value: float | None = None):
        super().__init__()
        self.value = value

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out if self.value is None else out + self.value


class Mul(_Elementwise):
    """Product of the inputs, times `value` if given."""

    def __init__(self, value: float | None = None):
        super().__init__()
        self.value = value

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out if self.value is None else out * self.value


class Sub(_Elementwise):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a - b


def _batch_expanded(xs: Sequence[torch.Tensor], joined_dim: int | None) -> Sequence[torch.Tensor]:
    """Inputs with a leading 1 (a parameter, a constant, positions) expanded to the batch of
    the others, unless the inputs are joined along dimension 0 itself."""
    if joined_dim == 0 or xs[0].dim() == 0:
        return xs
    batch = max(x.shape[0] for x in xs)
    if all(x.shape[0] == batch for x in xs):
        return xs
    return [x.expand(batch, *x.shape[1:]) if x.shape[0] == 1 else x for x in xs]


class Concat(nn.Module):
    """torch.cat along dim; an input with a leading 1 is expanded to the batch."""

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(_batch_expanded(xs, self.dim % xs[0].dim()), dim=self.dim)

    def meta_output(self, *xs: torch.Tensor) -> torch.Tensor:
        shape = list(xs[0].shape)  # build() checked ranks, dim and the other sizes
        shape[self.dim] = sum(x.shape[self.dim] for x in xs)
        if self.dim % len(shape):
            shape[0] = max(x.shape[0] for x in xs)
        return meta(shape, _promoted(xs))


class Stack(nn.Module):
    """torch.stack along dim; an input with a leading 1 is expanded to the batch."""

    def __init__(self, dim: int = 1):
        super().__init__()
        self.dim = dim

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.stack(_batch_expanded(xs, None), dim=self.dim)

    def meta_output(self, *xs: torch.Tensor) -> torch.Tensor:
        shape = list(xs[0].shape)
        if shape:
            shape[0] = max(x.shape[0] for x in xs)
        shape.insert(self.dim % (len(shape) + 1), len(xs))
        return meta(shape, _promoted(xs))


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

    def meta_output(self, x: torch.Tensor) -> torch.Tensor | None:
        dims = (self.dim,) if isinstance(self.dim, int) else tuple(self.dim)
        if x.dim() == 0 or not dims or not all(valid_dim(d, x.dim()) for d in dims):
            return None
        reduced = {d % x.dim() for d in dims}
        if len(reduced) != len(dims):
            return None  # torch refuses a dim named twice
        if self.keepdim:
            return meta([1 if i in reduced else s for i, s in enumerate(x.shape)], x.dtype)
        return meta([s for i, s in enumerate(x.shape) if i not in reduced], x.dtype)

    def extra_repr(self) -> str:
        return f"{self.how}, dim={self.dim}, keepdim={self.keepdim}"


def _same_shapes(op: str) -> Callable[[Sequence[Any], Mapping[str, Any]], None]:
    def check(inputs: Sequence[Any], _args: Mapping[str, Any]) -> None:
        _tensors(inputs)
        try:
            broadcast_shapes(*(x.shape for x in inputs))
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
            sizes = {s[position] for s in shapes}
            if position == 0 and len(sizes) == 2 and 1 in sizes:
                continue  # a leading 1 (no batch of its own) is expanded to the batch
            if len(sizes) != 1:
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
_functional("concat", Concat, 2, None, _concat_check("concat"))
_functional("stack", Stack, 2, None, _concat_check("stack"))


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
_functional("transpose", Transpose, doc="Swap two dimensions; the batch stays at dimension 0.")
_functional("permute", Permute, doc="Reorder all dimensions; the batch stays at dimension 0.")
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
