"""What a layer's backward pass keeps, asked of torch itself: one forward pass on meta
tensors, then a walk over the autograd nodes it recorded and the tensors they saved.

`check_inplace` needs four facts per layer: whether its backward needs its own output
(`_saved_result` of SigmoidBackward0, ReluBackward0, SoftmaxBackward0...), whether it saves
an input, whether its output is its input or a view of it (flatten, reshape, an identity),
and whether it writes over an input (the tensor's version counter moved: `dropout` with
`p: 0` and `inplace: true` writes nothing). A hand list of such ops would go stale with
torch; the autograd graph does not. Answers are cached per layer kind, arguments and input
ranks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import torch
from torch import nn

from tdsl.check.deferred_dynamo import dynamo_import_deferred
from tdsl.check.deferred_symbolic_shapes import symbolic_shapes_deferred

_MAX_NODES = 10_000  # one layer records a handful of autograd nodes; a bound for safety


@attrs.frozen
class Probe:
    saves_output: bool  # its backward reads its output: overwriting that breaks it
    saves_inputs: frozenset[int]  # inputs its backward reads
    aliases: frozenset[int]  # inputs its output is, or is a view of
    overwrites: frozenset[int] = frozenset()  # inputs it writes over (in place)


_CACHE: dict[Any, Probe | None] = {}


def probe(layer: nn.Module, inputs: Sequence[Any], kind: Any) -> Probe | None:
    """The probe of `layer` (on meta) applied to meta `inputs`, or None when it cannot be
    run on them or gives no tensor. `kind`: what, besides the inputs' ranks and dtypes,
    makes two layers alike (the op and its arguments)."""
    key = (type(layer), kind, layer.training, tuple(_signature(v) for v in inputs))
    if key not in _CACHE:
        _CACHE[key] = _run(layer, inputs)
    return _CACHE[key]


def _signature(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return (value.dim(), value.dtype)
    return type(value).__name__


def _run(layer: nn.Module, inputs: Sequence[Any]) -> Probe | None:
    probes = []
    for value in inputs:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            # A non-leaf, so a layer that works in place may run on it.
            # (`empty`, not `empty_like`: torch's Python `empty_like` imports sympy.)
            leaf = torch.empty(value.shape, dtype=value.dtype, device="meta")
            probes.append(leaf.requires_grad_().clone())
        elif isinstance(value, torch.Tensor):
            probes.append(torch.empty(value.shape, dtype=value.dtype, device="meta"))
        else:
            return None
    # Where the walk stops: the clones, taken before a layer working in place moves them on.
    stop = {p.grad_fn for p in probes if p.grad_fn is not None}
    versions = [p._version for p in probes]  # torch counts each write to a tensor
    # Dropout draws on meta; keep the generator where validation found it anyway. Meta
    # kernels would import torch._dynamo and sympy (seconds) for what plain ints answer.
    with (
        torch.random.fork_rng(devices=[]),
        dynamo_import_deferred(),
        symbolic_shapes_deferred(),
        torch.enable_grad(),
    ):
        try:
            out = layer(*probes)
        except Exception:  # a layer meta tensors cannot run: no answer, no report
            return None
        if not isinstance(out, torch.Tensor):
            return None
        aliases = frozenset(i for i, p in enumerate(probes) if _same_storage(out, p))
        overwrites = frozenset(i for i, p in enumerate(probes) if p._version != versions[i])
        saved = _saved_tensors(out, stop)
    base = out._base if out._is_view() else out
    saves_output = any(_is(t, base) or _is(t, out) for t in saved)
    saves_inputs = frozenset(
        i
        for i, p in enumerate(probes)
        if isinstance(p, torch.Tensor) and p.requires_grad and any(_is(t, p) for t in saved)
    )
    return Probe(saves_output, saves_inputs, aliases, overwrites)


def _same_storage(out: torch.Tensor, value: Any) -> bool:
    if not isinstance(value, torch.Tensor):
        return False
    root = value._base if value._is_view() else value
    mine = out._base if out._is_view() else out
    return out is value or mine is root


def _is(saved: torch.Tensor, value: torch.Tensor) -> bool:
    """Whether a tensor autograd saved is `value` (or a view of it). A saved output comes
    back as a new tensor object carrying the node and output number it came from."""
    while True:
        if saved is value:
            return True
        fn = value.grad_fn
        if fn is not None and saved.grad_fn is fn and saved.output_nr == value.output_nr:
            return True
        if not saved._is_view():
            return False
        saved = saved._base


def _saved_tensors(out: torch.Tensor, stop: set[Any]) -> list[torch.Tensor]:
    """Every tensor saved by the autograd nodes between `out` and the nodes in `stop`."""
    seen, todo, found = set(), [out.grad_fn], []
    while todo and len(seen) < _MAX_NODES:
        fn = todo.pop()
        if fn is None or fn in seen or fn in stop:
            continue
        seen.add(fn)
        for name in dir(fn):
            if not name.startswith("_saved_"):
                continue
            try:
                value = getattr(fn, name)
            except Exception:  # freed, or not a tensor torch can hand back
                continue
            items = value if isinstance(value, tuple | list) else (value,)
            found += [v for v in items if isinstance(v, torch.Tensor)]
        todo += [next_fn for next_fn, _ in fn.next_functions]
    return found
