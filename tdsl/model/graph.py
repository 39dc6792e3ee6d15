"""The model as a DAG of nodes, and the orders read off it: execution order (with cycles
reported) and which nodes reach an output.

A node is an op, a block use (`body`: the block's own graph with that use's arguments), a
repeated layer (`copies`, applied in sequence), or a shared one (`shares`: the node whose
module, parameters included, it applies again). `tdsl.model.resolve` makes graphs from specs.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from typing import Any

import attrs

from tdsl import spec as S
from tdsl.errors import Diagnostics, SpecPath


@attrs.frozen
class Node:
    name: str
    op: str
    args: Mapping[str, Any]
    inputs: tuple[str, ...]
    path: SpecPath  # where the layer sits in the spec
    body: Graph | None = None  # a block use: the block's graph with this use's arguments
    copies: tuple[Node, ...] = ()  # `repeat`: the copies, each fed the one before
    shares: str | None = None  # the node whose module this one applies again
    ties: Mapping[str, str] = attrs.field(factory=dict)  # own parameter -> the one it is
    trainable: bool = True  # false: the parameters of its module (all inside it) are frozen

    def dependencies(self) -> tuple[str, ...]:
        """What must be built first: the inputs, and the node whose module this one shares."""
        return (*self.inputs, self.shares) if self.shares else self.inputs


@attrs.frozen
class Graph:
    inputs: tuple[S.Input, ...]  # the model's declared inputs; none for a block's graph
    nodes: tuple[Node, ...]  # topologically ordered
    outputs: tuple[str, ...]
    input_names: tuple[str, ...] = ()
    # A graph resolved despite errors (which were reported): its nodes are checked one by
    # one, but it builds no module. `broken`: names whose value no node may read (a name
    # given twice, a layer reading itself), so only the layers after them go unchecked.
    complete: bool = True
    broken: frozenset[str] = frozenset()

    def __attrs_post_init__(self) -> None:
        if not self.input_names:
            object.__setattr__(self, "input_names", tuple(i.name for i in self.inputs))


def module_ops(graph: Graph, prefix: str = "") -> dict[str, str]:
    """Module path -> op for every node, blocks and copies included (`layer1.0.conv1`)."""
    found: dict[str, str] = {}
    for node in graph.nodes:
        if node.shares:
            continue  # its module is the shared node's, listed under that name
        path = f"{prefix}{node.name}"
        found[path] = node.op
        for copy in node.copies:
            found[f"{path}.{copy.name}"] = copy.op
            if copy.body is not None:
                found.update(module_ops(copy.body, f"{path}.{copy.name}."))
        if node.body is not None:
            found.update(module_ops(node.body, f"{path}."))
    return found


def topological(nodes: list[Node], ready: set[str], diags: Diagnostics) -> list[Node] | None:
    """Kahn's algorithm; among ready nodes the one written first goes first. Nodes are
    kept by position: a graph resolved despite errors may hold a name twice."""
    waiting = [sum(1 for i in n.dependencies() if i not in ready) for n in nodes]
    users: dict[str, list[int]] = {}
    for index, node in enumerate(nodes):
        for source in node.dependencies():
            if source not in ready:
                users.setdefault(source, []).append(index)
    heap = [index for index, count in enumerate(waiting) if count == 0]
    heapq.heapify(heap)
    ordered: list[Node] = []
    while heap:
        node = nodes[heapq.heappop(heap)]
        ordered.append(node)
        for user in users.get(node.name, ()):
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(heap, user)
    if len(ordered) < len(nodes):
        done = {id(n) for n in ordered}
        pending = {n.name: n for n in nodes if id(n) not in done}
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
        current = next(i for i in pending[current].dependencies() if i in pending)
    cycle = [*trail[trail.index(current) :], current]
    return cycle[::-1]  # trail follows inputs backwards; report in data-flow order


def warn_unreachable(
    nodes: list[Node], outputs: tuple[str, ...], diags: Diagnostics, by_default: bool = False
) -> None:
    """Warn of layers that reach no output. `by_default`: the output is the last layer only
    because none was named, so say once which layer that is and which ones it leaves out
    (an auxiliary head appended last becomes the output), not once per layer."""
    by_name = {n.name: n for n in nodes}
    needed, stack = set(), list(outputs)
    while stack:
        name = stack.pop()
        if name in needed or name not in by_name:
            continue
        needed.add(name)
        stack.extend(by_name[name].dependencies())
    left = [node for node in nodes if node.name not in needed]
    if by_default and left and outputs and outputs[0] in by_name:
        read = {i for node in left for i in node.dependencies()}
        ends = [node.name for node in left if node.name not in read]  # heads nothing reads
        names = ", ".join(repr(n.name) for n in left[:6]) + (" ..." if len(left) > 6 else "")
        diags.warning(
            by_name[outputs[0]].path,
            f"the model's output is {outputs[0]!r}, the last layer (model.outputs is not "
            f"given); {len(left)} layer{'s' * (len(left) > 1)} do not reach it: {names}",
            f"if you meant {ends[-1]!r}, write model.outputs: [{ends[-1]}]; else remove "
            "the layers that reach no output",
        )
        return
    for node in left:
        diags.warning(
            node.path,
            f"layer {node.name!r} does not reach any output",
            "connect it, list it in model.outputs, or remove it",
        )
