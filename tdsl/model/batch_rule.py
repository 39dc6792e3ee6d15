"""Where the batch dimension is, node by node, and the ops refused for moving it.

Every value between nodes carries a layout: for a tensor, the position of its batch
dimension (0 for what layers produce; 1 for the hidden states torch's recurrent layers
return, [layers, B, H]; None for a value without a batch, such as a parameter or position
table that broadcasts against batched values); for a tuple, its elements' layouts.

Inference runs at the stand-in batch size `BATCH`, a prime no width is likely to equal, so
an output shape shows where the batch went by that marker alone. Where the marker is
ambiguous (a per-sample size that is a multiple of it) or a node is refused, the node runs
once more at a second stand-in size: the dimensions that change are the batch-dependent ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from tdsl.model.batch_trace import (
    Layout,
    batch_text,
    find_batch,
    inherit,
    leaves,
    rerun,
    stray,
    symbolic,
    unknown,
)
from tdsl.registry.ops import BATCH, OpDef, OpError, shape_text

INPUT: Layout = 0  # a model input is batch-major
_PER_SAMPLE = "only the per-sample dimensions 1..n"
_HINTS = {
    "moves": f"transpose, permute and stack {_PER_SAMPLE}",
    "spreads": f"transpose, permute and stack {_PER_SAMPLE}",
    "leaves": "first select, transpose or reduce dimension 0 of the recurrent layer's hidden state",
    "merges": f"flatten and concat {_PER_SAMPLE} (flatten's start_dim defaults to 1)",
    "drops": f"select, slice and reduce {_PER_SAMPLE}",
    "resizes": f"select, slice and reduce {_PER_SAMPLE}",
    "along": "work along the per-sample dimensions 1..n (dim -1 is the last)",
}
_WHAT = {
    "spreads": "spreads the batch over several dimensions",
    "merges": "merges the batch dimension with another",
    "drops": "drops the batch dimension",
    "resizes": "changes the size of the batch dimension",
}


def check_inputs(layer: nn.Module, inputs: Sequence[Any], layouts: Sequence[Layout]) -> None:
    """Refuse, before running, a layer that would mix the samples of a batch without its
    shapes showing it: a sequence layer reading the batch as its steps, or a softmax over
    the dimension torch picks when none is given."""
    implicit = _IMPLICIT_DIM.get(type(layer))
    # Plain attributes live in __dict__; hasattr would go through nn.Module.__getattr__,
    # whose AttributeError costs more than the rest of this check on most layers.
    sequence = [m for m in layer.modules() if "batch_first" in m.__dict__]
    if implicit is None and not sequence:
        return  # most layers: nothing to check before running them
    batched = [(x, p) for x, p in leaves(inputs, layouts) if p is not None]
    x, position = inputs[0], layouts[0]
    if implicit and batched and layer.__dict__.get("dim") is None and isinstance(x, torch.Tensor):
        _along_batch(implicit(x.dim()), x, position, x)
    if batched and position == 0 and any(m.batch_first is False for m in sequence):
        raise OpError(
            "would read dimension 1 as the batch (batch_first is false)",
            hint="dimension 0 is the batch in tdsl: set batch_first: true",
        )
    # The sequence is the first input; a second one is a [batch, steps] padding mask.
    for x, position in batched[:1] if sequence else ():
        if position == 0 and x.dim() == 2:
            # torch would read [batch, features] as one unbatched sequence whose steps are
            # the batch: never what a spec means, and thousands of meta steps to find out.
            raise OpError(
                f"needs a [batch, steps, features] input, got {shape_text(x.shape)}",
                hint="declare the input's per-sample shape as [steps, features]",
            )


def output_layout(
    op: OpDef,
    layer: nn.Module,
    inputs: Sequence[Any],
    layouts: Sequence[Layout],
    output: Any,
    run: Callable[[Sequence[Any]], Any],
) -> Layout:
    """The output's layout; raises `OpError` for an op that moves, merges or drops the
    batch. `run` computes the layer's output on other (meta) inputs."""
    if _plainly_kept(op, inputs, layouts, output):
        _check_dims(layer, inputs, layouts, output)
        return 0
    pairs = list(leaves(inputs, layouts))
    if all(p is None for _, p in pairs):
        return inherit(output, None, {})  # nothing batched came in, nothing goes out
    passed = {id(x): p for x, p in pairs}  # a value handed through (item) keeps its layout
    received = [p for _, p in pairs]
    found, second = find_batch(output, None), None
    if unknown(found) or any(stray(x.shape, p) for x, p in pairs):
        second = rerun(inputs, layouts, run)
        if second is None:  # the op refuses another batch size: its shapes depend on it
            raise OpError("gives an output whose shape depends on the batch size")
        found = find_batch(output, second)
    problems = _problems(op, layer, output, found, passed, received)
    if problems and second is None:
        second = rerun(inputs, layouts, run)  # to tell merged from resized, and show it
        if second is not None:
            found = find_batch(output, second)
            problems = _problems(op, layer, output, found, passed, received) or problems
    if problems:
        kind, what = problems[0]
        shown = ", ".join(batch_text(x, p) for x, p in zip(inputs, layouts, strict=True))
        _refuse(f"{what}: {shown} -> {symbolic(output, second)}", kind)
    _check_dims(layer, inputs, layouts, output)
    return inherit(output, found, passed)


def _plainly_kept(op: OpDef, inputs: Sequence[Any], layouts: Sequence[Layout], out: Any) -> bool:
    """The common case, decided without the general walk: tensors in, batch-major or
    without a batch, and a batch-major tensor out, no other size a multiple of BATCH."""
    if op.batch == "broadcast" or not isinstance(out, torch.Tensor) or not out.dim():
        return False
    if out.shape[0] != BATCH or stray(out.shape, 0) or 0 not in layouts:
        return False
    return all(
        isinstance(x, torch.Tensor) and p in (0, None) and not stray(x.shape, p)
        for x, p in zip(inputs, layouts, strict=True)
    )


def output_problem(value: Any, layout: Layout) -> tuple[str, str] | None:
    """(message, hint) when a model output is not batch-major, else None."""
    if not isinstance(value, torch.Tensor) or layout == 0:
        return None
    if layout is None:
        return (
            f"is a model output without a batch dimension: {shape_text(value.shape)}",
            "a model output holds one row per sample (dimension 0 is the batch)",
        )
    return (
        f"is a model output with the batch at dimension {layout}: {batch_text(value, layout)}",
        f"dimension 0 is the batch; {_HINTS['leaves']}",
    )


def _problems(
    op: OpDef, layer: nn.Module, output: Any, found: Any, passed: dict, received: list
) -> list[tuple[str, str]]:
    """(hint kind, what the op does) for each output tensor whose batch is out of place."""
    problems = []
    for index, (value, position) in enumerate(leaves((output,), (found,))):
        problem = None if id(value) in passed else _problem(op, layer, index, position, received)
        problems += [problem] if problem else []
    return problems


def _problem(
    op: OpDef, layer: nn.Module, index: int, found: Any, received: list
) -> tuple[str, str] | None:
    if isinstance(found, str):
        return found, _WHAT[found]  # merged, spread or resized: no op may do that
    if op.batch == "own":
        return None
    if op.batch == "broadcast":
        carries = "is a broadcast op, but its output carries the batch"
        return None if found is None else ("moves", carries)
    # torch's recurrent layers return (output, hidden states): the states are [layers, B, H].
    wanted = 1 if isinstance(layer, nn.RNNBase) and index > 0 else 0
    if found == wanted:
        return None
    if found is None:
        return "drops", _WHAT["drops"]
    if found in received:  # where an input had it: a hidden state's dimension 1
        return "leaves", f"needs the batch at dimension {wanted}, but it stays at {found}"
    return "moves", "moves the batch dimension"


def _refuse(message: str, kind: str) -> None:
    raise OpError(message, hint=f"dimension 0 is the batch; {_HINTS[kind]}")


# Layers whose dimension torch picks when none is given.
_IMPLICIT_DIM: dict[type, Callable[[int], int]] = {
    nn.Softmax: lambda rank: 0 if rank in (0, 1, 3) else 1,
    nn.LogSoftmax: lambda rank: 0 if rank in (0, 1, 3) else 1,
    nn.Softmin: lambda rank: 0 if rank in (0, 1, 3) else 1,
    nn.Softmax2d: lambda rank: -3,
}


def _check_dims(layer: nn.Module, inputs: Sequence[Any], layouts: Sequence[Layout], out: Any):
    """A shape-keeping op working along the batch (softmax over dim 0) mixes the samples
    without the shapes showing it; its `dim` says so."""
    x, position = inputs[0], layouts[0]
    if not isinstance(x, torch.Tensor) or not isinstance(position, int):
        return
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        return
    if not type(layer).__module__.startswith(("torch.nn.", "tdsl.")):
        return  # a user's layer may use `dim` for something else
    dims = layer.__dict__.get("dim")
    for dim in dims if isinstance(dims, tuple | list) else (dims,):
        _along_batch(dim, x, position, out)


def _along_batch(dim: Any, x: torch.Tensor, position: int, out: torch.Tensor) -> None:
    rank = x.dim()
    if isinstance(dim, int) and -rank <= dim < rank and dim % rank == position:
        shapes = f"{batch_text(x, position)} -> {batch_text(out, position)}"
        _refuse(f"works along the batch dimension (dim {dim}): {shapes}", "along")
