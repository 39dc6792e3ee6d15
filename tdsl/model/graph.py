"""From a `Model` spec to a checked DAG: names, edges, order, outputs.

The sequential list form is the graph form with implicit edges: a layer that names no
inputs consumes the layer before it (the first layer consumes the model's only input).
"""

from __future__ import annotations

import heapq
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

import attrs
from torch import nn

from tdsl import spec as S
from tdsl.errors import Diagnostics, SpecPath, did_you_mean, format_path
from tdsl.registry import ops

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Names become attribute paths and state-dict keys; tdsl keeps them to plain ASCII.
_NAME_HINT = "use ASCII letters, digits and underscores, not starting with a digit"


@attrs.frozen
class Node:
    name: str
    op: str
    args: Mapping[str, Any]
    inputs: tuple[str, ...]
    path: SpecPath  # where the layer sits in the spec


@attrs.frozen
class Graph:
    inputs: tuple[S.Input, ...]
    nodes: tuple[Node, ...]  # topologically ordered
    outputs: tuple[str, ...]


def auto_names(layers: tuple[S.Layer, ...]) -> list[str]:
    """Explicit names, or `<op><k>` counted per op (linear1, relu1, linear2, ...)."""
    taken = {layer.name for layer in layers if layer.name}
    counts: Counter[str] = Counter()
    names = []
    for layer in layers:
        if layer.name:
            names.append(layer.name)
            continue
        stem = re.sub(r"\W", "_", layer.op.rsplit(".", 1)[-1].lower())
        while True:
            counts[stem] += 1
            candidate = f"{stem}{counts[stem]}"
            if candidate not in taken:
                break
        taken.add(candidate)
        names.append(candidate)
    return names


def resolve(model: S.Model, diags: Diagnostics, path: SpecPath = ("model",)) -> Graph | None:
    """Check names, edges and outputs; return the graph in execution order, or None."""
    errors_before = len(diags.items)
    input_names = [i.name for i in model.inputs]
    for index, name in enumerate(input_names):
        if not _NAME.fullmatch(name):
            diags.error(
                (*path, "inputs", index, "name"),
                f"input name {name!r} is not an ASCII identifier",
                _NAME_HINT,
            )
        if input_names.index(name) != index:
            diags.error((*path, "inputs", index, "name"), f"duplicate input name {name!r}")

    names = auto_names(model.layers)
    nodes: list[Node] = []
    first_defined: dict[str, SpecPath] = {
        n: (*path, "inputs", i) for i, n in enumerate(input_names)
    }
    for index, (layer, name) in enumerate(zip(model.layers, names, strict=True)):
        layer_path = (*path, "layers", index)
        if not _NAME.fullmatch(name):
            diags.error(
                (*layer_path, "name"),
                f"layer name {name!r} is not an ASCII identifier",
                _NAME_HINT,
            )
        elif hasattr(nn.Module, name):
            diags.error(
                (*layer_path, "name"),
                f"layer name {name!r} is reserved by torch.nn.Module",
                "choose another name",
            )
        elif name in first_defined:
            diags.error(
                (*layer_path, "name"),
                f"duplicate name {name!r}",
                f"first used at {format_path(first_defined[name])}",
            )
        else:
            first_defined[name] = layer_path
        if layer.inputs:
            inputs = layer.inputs
        elif ops.takes_no_inputs(layer.op):
            inputs = ()  # a source (parameter, constant) reads nothing: no implicit edge
        elif index > 0:
            inputs = (names[index - 1],)
        elif len(input_names) == 1:
            inputs = (input_names[0],)
        else:
            diags.error(
                layer_path,
                "the first layer must name its inputs when the model has several",
                "add inputs: [" + ", ".join(input_names) + "]",
            )
            inputs = ()
        nodes.append(Node(name, layer.op, layer.args, tuple(inputs), layer_path))

    known = set(input_names) | {n.name for n in nodes}
    for node in nodes:
        for position, source in enumerate(node.inputs):
            if source == node.name:
                diags.error(
                    (*node.path, "inputs", position), f"layer {node.name!r} takes itself as input"
                )
            elif source not in known:
                diags.error(
                    (*node.path, "inputs", position),
                    f"unknown input {source!r}",
                    did_you_mean(source, known),
                )

    outputs = model.outputs or ((nodes[-1].name,) if nodes else ())
    layer_names = [n.name for n in nodes]
    for position, out in enumerate(model.outputs):
        if out in input_names:
            diags.error(
                (*path, "outputs", position),
                f"output {out!r} is a model input, not a layer",
                did_you_mean(out, layer_names),
            )
        elif out not in known:
            diags.error(
                (*path, "outputs", position), f"unknown output {out!r}", did_you_mean(out, known)
            )
    if not outputs:
        diags.error((*path, "outputs"), "the model has no output")
    if len(diags.items) > errors_before:
        return None

    ordered = _topological(nodes, set(input_names), diags, path)
    if ordered is None:
        return None
    _warn_unreachable(ordered, outputs, diags)
    return Graph(model.inputs, tuple(ordered), tuple(outputs))


def _topological(nodes: list[Node], ready: set[str], diags: Diagnostics, path: SpecPath):
    """Kahn's algorithm; among ready nodes the one written first goes first."""
    position = {n.name: i for i, n in enumerate(nodes)}
    waiting = {n.name: sum(1 for i in n.inputs if i not in ready) for n in nodes}
    users: dict[str, list[str]] = {}
    for node in nodes:
        for source in node.inputs:
            if source not in ready:
                users.setdefault(source, []).append(node.name)
    heap = [position[name] for name, count in waiting.items() if count == 0]
    heapq.heapify(heap)
    ordered: list[Node] = []
    while heap:
        node = nodes[heapq.heappop(heap)]
        ordered.append(node)
        for user in users.get(node.name, ()):
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(heap, position[user])
    if len(ordered) < len(nodes):
        done = {n.name for n in ordered}
        pending = {n.name: n for n in nodes if n.name not in done}
        cycle = _find_cycle(pending)
        diags.error(pending[cycle[0]].path, "the graph has a cycle: " + " -> ".join(cycle))
        return None
    return ordered


def _find_cycle(pending: dict[str, Node]) -> list[str]:
    start = next(iter(pending))
    trail: list[str] = []
    current = start
    while current not in trail:
        trail.append(current)
        current = next(i for i in pending[current].inputs if i in pending)
    cycle = [*trail[trail.index(current) :], current]
    return cycle[::-1]  # trail follows inputs backwards; report in data-flow order


def _warn_unreachable(nodes: list[Node], outputs: tuple[str, ...], diags: Diagnostics) -> None:
    by_name = {n.name: n for n in nodes}
    needed, stack = set(), list(outputs)
    while stack:
        name = stack.pop()
        if name in needed or name not in by_name:
            continue
        needed.add(name)
        stack.extend(by_name[name].inputs)
    for node in nodes:
        if node.name not in needed:
            diags.warning(
                node.path,
                f"layer {node.name!r} does not reach any output",
                "connect it, list it in model.outputs, or remove it",
            )
