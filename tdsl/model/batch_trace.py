"""Tracing the batch through the values between nodes: every tensor in a nested value,
where its batch dimension went (read off the stand-in size `BATCH`, or, where that is
ambiguous, off a second run at `BATCH2`), and shapes written with the batch as B.

`tdsl.model.batch_rule` decides from these traces which ops to refuse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from tdsl.registry.ops import BATCH

Layout = int | None | tuple["Layout", ...]
BATCH2 = 7907  # the second stand-in: another prime, for telling batch-dependent sizes apart
_UNKNOWN = "?"  # BATCH alone cannot tell where the batch is


def elements(value: Any, layout: Any) -> Iterator[tuple[Any, Any]]:
    """(element, its layout) for a tuple or list value."""
    inner = layout if isinstance(layout, tuple) else (layout,) * len(value)
    return zip(value, inner, strict=True)


def leaves(values: Sequence[Any], layouts: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
    """(tensor, its batch position) for every tensor in (nested) values."""
    for value, layout in zip(values, layouts, strict=True):
        if isinstance(value, torch.Tensor):
            yield value, layout
        elif isinstance(value, tuple | list):
            for element, inner in elements(value, layout):
                yield from leaves((element,), (inner,))


def inherit(output: Any, found: Any, passed: dict[int, Any]) -> Layout:
    """The layout found, except where a value was handed through unchanged."""
    if isinstance(output, torch.Tensor):
        return passed.get(id(output), found)
    if isinstance(output, tuple | list):
        return tuple(inherit(v, f, passed) for v, f in elements(output, found))
    return None


def stray(shape: Sequence[int], position: Any) -> bool:
    """Whether a shape has a multiple of BATCH other than its batch dimension."""
    return any(d and d % BATCH == 0 and i != position for i, d in enumerate(shape))


def unknown(found: Any) -> bool:
    if isinstance(found, tuple):
        return any(unknown(f) for f in found)
    return found == _UNKNOWN


def find_batch(value: Any, second: Any) -> Any:
    """Per tensor: the batch position, None (no batch), or what went wrong ("merges",
    "spreads", "resizes"), from BATCH alone (`_UNKNOWN` where it cannot tell) or, given
    the `second` output (at BATCH2), from the sizes that changed."""
    if isinstance(value, tuple | list):
        seconds = second if isinstance(second, tuple | list) else [None] * len(value)
        return tuple(find_batch(v, s) for v, s in zip(value, seconds, strict=False))
    if not isinstance(value, torch.Tensor):
        return None
    if second is None:
        multiples = [i for i, d in enumerate(value.shape) if d and d % BATCH == 0]
        if len(multiples) != 1:
            return _UNKNOWN if multiples else None
        return multiples[0] if value.shape[multiples[0]] == BATCH else "merges"
    if not isinstance(second, torch.Tensor) or second.dim() != value.dim():
        return "resizes"
    changed = [i for i, (a, b) in enumerate(zip(value.shape, second.shape, strict=True)) if a != b]
    if len(changed) != 1:
        return "spreads" if changed else None
    i = changed[0]
    a, b = value.shape[i], second.shape[i]
    if a == BATCH and b == BATCH2:
        return i
    return "merges" if a % BATCH == 0 and b % BATCH2 == 0 else "resizes"


def rerun(inputs: Sequence[Any], layouts: Sequence[Layout], run: Callable) -> Any:
    """The output with every batch dimension at BATCH2 instead (None if that fails)."""

    def resized(value: Any, layout: Any) -> Any:
        if isinstance(value, tuple | list):
            return type(value)(resized(v, p) for v, p in elements(value, layout))
        if not isinstance(value, torch.Tensor) or layout is None:
            return value
        shape = list(value.shape)
        shape[layout] = BATCH2
        return torch.empty(shape, dtype=value.dtype, device="meta")

    try:
        return run([resized(v, p) for v, p in zip(inputs, layouts, strict=True)])
    except Exception:  # the op refuses the other batch size: its shape depends on it
        return None


def batch_text(value: Any, layout: Layout) -> str:
    """A value's shape with its batch dimension as B (a per-sample size stays a number)."""
    if isinstance(value, tuple | list):
        return "(" + ", ".join(batch_text(v, p) for v, p in elements(value, layout)) + ")"
    if not isinstance(value, torch.Tensor):
        return type(value).__name__
    return "[" + ", ".join("B" if i == layout else str(d) for i, d in enumerate(value.shape)) + "]"


def symbolic(value: Any, second: Any) -> str:
    """An output's shape with each batch-dependent size written in terms of B."""
    if isinstance(value, tuple | list):
        seconds = second if isinstance(second, tuple | list) else [None] * len(value)
        parts = (symbolic(v, s) for v, s in zip(value, seconds, strict=False))
        return "(" + ", ".join(parts) + ")"
    if not isinstance(value, torch.Tensor):
        return type(value).__name__
    if not isinstance(second, torch.Tensor) or second.dim() != value.dim():
        return "[" + ", ".join(_marked(d) for d in value.shape) + "]"  # BATCH alone
    return (
        "[" + ", ".join(_size(a, b) for a, b in zip(value.shape, second.shape, strict=True)) + "]"
    )


def _marked(size: int) -> str:
    if size and size % BATCH == 0:
        return "B" if size == BATCH else f"B*{size // BATCH}"
    return str(size)


def _size(a: int, b: int) -> str:
    """A size at BATCH (`a`) and at BATCH2 (`b`), in terms of B where it depends on it."""
    if a == b:
        return str(a)
    if a % BATCH == 0 and b % BATCH2 == 0 and a // BATCH == b // BATCH2:
        return _marked(a)
    return f"B{a - BATCH:+d}" if a - BATCH == b - BATCH2 else "?"
