"""One traced copy stands for the identical copies after it: a cost trace of GPT-2 small
runs two of its twelve blocks.

Copies of a repeated layer built from the same spec (the same op, arguments, body,
freezing; `first:` and `vary:` make copies differ) that receive a tensor of the same
shape, dtype and strides compute the same operations and save the same tensors. While a
trace runs inside `identical_copies_skipped`, once two such copies in a row have run, the
next identical ones are not run: the input passes through (it has the layout the copy
would return, since the copy before returned it), and the second copy is counted once more
per skip. A test checks the counts against a full trace for every spec in the gallery.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Iterator
from typing import Any

import attrs
import torch
from torch import nn

from tdsl.model.graph import Graph, Node
from tdsl.model.modules import GraphModule, Repeated


@attrs.define
class Skips:
    """The copies a trace skipped: each as (the Repeated holding it, the copy it repeats)."""

    events: list[tuple[nn.Module, nn.Module]] = attrs.Factory(list)

    def extra(self, module: nn.Module, counted: dict[int, int]) -> int:
        """What the copies skipped inside `module` (or by it, for a Repeated) would have
        added to `counted` (a figure per traced module, by id)."""
        inside = {id(m) for m in module.modules()}
        return sum(
            self.full(source, counted) for holder, source in self.events if id(holder) in inside
        )

    def full(self, module: nn.Module, counted: dict[int, int]) -> int:
        """`counted` for `module` with the copies skipped inside it added back."""
        return counted.get(id(module), 0) + self.extra(module, counted)


def _frozen(value: Any) -> Hashable:
    if isinstance(value, dict) or hasattr(value, "items"):
        return tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return repr(value)


def _graph_signature(graph: Graph | None) -> Hashable:
    if graph is None:
        return None
    return (graph.input_names, graph.outputs, tuple(_signature(n, True) for n in graph.nodes))


def _signature(node: Node, named: bool = False) -> Hashable:
    """What a copy computes: its spec without the copy's own name and place."""
    return (
        node.name if named else None,  # inside a block the names wire the layers together
        node.op,
        _frozen(node.args),
        node.inputs if named else None,
        _graph_signature(node.body),
        tuple(_signature(c) for c in node.copies),
        node.shares,
        _frozen(node.ties),
        node.trainable,
    )


def _layout(value: Any) -> Hashable | None:
    if not isinstance(value, torch.Tensor):
        return None  # only a tensor's successor is known to be the same
    return (tuple(value.shape), value.dtype, value.stride(), value.requires_grad)


def _repeated(module: nn.Module, graph: Graph) -> Iterator[tuple[Repeated, tuple[Node, ...]]]:
    """Every Repeated module in the model, with the spec nodes of its copies."""
    for node in graph.nodes:
        child = module._modules.get(node.name)
        if node.copies and isinstance(child, Repeated):
            yield child, node.copies
            for copy_node, copy in zip(node.copies, child, strict=True):
                if copy_node.body is not None and isinstance(copy, GraphModule):
                    yield from _repeated(copy, copy_node.body)
        elif node.body is not None and isinstance(child, GraphModule):
            yield from _repeated(child, node.body)


def _skipping_forward(repeated: Repeated, nodes: tuple[Node, ...], skips: Skips):
    signatures = [_signature(node) for node in nodes]

    def forward(first: Any, *rest: Any) -> Any:
        value, last_key, source = first, None, None
        for signature, copy in zip(signatures, repeated, strict=True):
            key = (signature, _layout(value))
            if source is not None and key == last_key:
                skips.events.append((repeated, source))
                continue  # `value` has the layout this copy would return
            value = copy(value, *rest)
            kept = key[1] is not None and _layout(value) == key[1]
            # Only a copy after an identical one stands for those after it: the first of a
            # run may save its input, which the others find saved by the copy before them.
            source = copy if kept and key == last_key else None
            last_key = key if kept else None
        return value

    return forward


@contextlib.contextmanager
def identical_copies_skipped(module: nn.Module, graph: Graph) -> Iterator[Skips]:
    skips = Skips()
    patched = []
    for repeated, nodes in _repeated(module, graph):
        repeated.forward = _skipping_forward(repeated, nodes, skips)
        patched.append(repeated)
    try:
        yield skips
    finally:
        for repeated in patched:
            del repeated.forward  # the class's forward again
