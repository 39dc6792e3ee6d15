"""From a `Model` spec to a checked graph: names, edges, outputs, and what blocks, `repeat`,
`share` and `when` make of the layers.

The sequential list form is the graph form with implicit edges: a layer that names no
inputs consumes the layer before it (the first layer consumes the only input). A block use
is resolved with its arguments substituted into the block's layers, so each use (and each
copy of a repeated one) gets a graph of its own; a mistake inside a block is reported at
the block's line, once.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping

import attrs

from tdsl import spec as S
from tdsl.errors import Diagnostics, SpecPath, format_path
from tdsl.model.graph import Graph, Node, topological, warn_unreachable
from tdsl.model.layer_nodes import Scope, layer_node, substituted, switched_on
from tdsl.model.modules import RESERVED_NAMES
from tdsl.registry import ops
from tdsl.wording import did_you_mean

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Names become attribute paths and state-dict keys; tdsl keeps them to plain ASCII.
_NAME_HINT = "use ASCII letters, digits and underscores, not starting with a digit"


def auto_names(layers: tuple[S.Layer, ...]) -> list[str]:
    """Explicit names, or `<op><k>` counted per op (linear1, relu1, linear2, ...)."""
    taken = {layer.name for layer in layers if layer.name}
    counts: Counter[str] = Counter()
    names = []
    for layer in layers:
        if layer.name:
            names.append(layer.name)
            continue
        stem = re.sub(r"\W", "_", (layer.op or f"{layer.share}_again").rsplit(".", 1)[-1].lower())
        while True:
            counts[stem] += 1
            candidate = f"{stem}{counts[stem]}"
            if candidate not in taken:
                break
        taken.add(candidate)
        names.append(candidate)
    return names


def resolve(model: S.Model, diags: Diagnostics, path: SpecPath = ("model",)) -> Graph | None:
    """Check names, edges, blocks and outputs; return the graph in execution order. After
    errors it is incomplete (`Graph.complete`): its nodes can still be checked, those
    reading a broken name are not; None where even that order does not exist (a cycle)."""
    errors_before = diags.error_count
    input_names = [i.name for i in model.inputs]
    _check_names(input_names, (*path, "inputs"), "input", diags)
    blocks = _usable_blocks(model, path, diags)
    graph = resolve_layers(
        model.layers, tuple(input_names), model.outputs, path, Scope(blocks), diags, partial=True
    )
    if graph is None:
        return None
    return attrs.evolve(
        graph, inputs=model.inputs, complete=graph.complete and diags.error_count == errors_before
    )


def _check_names(names: list[str], path: SpecPath, what: str, diags: Diagnostics) -> None:
    for index, name in enumerate(names):
        if not _NAME.fullmatch(name):
            diags.error(
                (*path, index, "name") if what == "input" else (*path, index),
                f"{what} name {name!r} is not an ASCII identifier",
                _NAME_HINT,
            )
        if names.index(name) != index:
            where = (*path, index, "name") if what == "input" else (*path, index)
            diags.error(where, f"duplicate {what} name {name!r}")


def _usable_blocks(model: S.Model, path: SpecPath, diags: Diagnostics) -> dict[str, S.Block]:
    """The blocks layers may use; one with a bad name is reported and left out (a block
    named like an op would hide the op)."""
    used = {layer.op for block in model.blocks.values() for layer in block.layers}
    used |= {layer.op for layer in model.layers}
    usable = {}
    for name, block in model.blocks.items():
        where = (*path, "blocks", name)
        errors_before = diags.error_count
        if not _NAME.fullmatch(name):
            diags.error(where, f"block name {name!r} is not an ASCII identifier", _NAME_HINT)
        elif ops.lookup(name) is not None:
            diags.error(where, f"block name {name!r} is already an op", "rename the block")
        _check_names(list(block.inputs), (*where, "inputs"), "block input", diags)
        for param in block.params:
            if not _NAME.fullmatch(str(param)):
                diags.error(
                    (*where, "params", param),
                    f"parameter name {param!r} is not an ASCII identifier",
                    _NAME_HINT,
                )
        if diags.error_count == errors_before:
            usable[name] = block
        if name not in used:
            diags.warning(where, f"block {name!r} is never used", "use it as an op or remove it")
    return usable


def resolve_layers(
    layers: tuple[S.Layer, ...],
    input_names: tuple[str, ...],
    outputs: tuple[str, ...],
    path: SpecPath,
    scope: Scope,
    diags: Diagnostics,
    partial: bool = False,
) -> Graph | None:
    """One graph's layers (the model's, or a block's for one use) resolved into nodes.
    With errors: None, or where `partial`, the graph as far as it can be ordered."""
    errors_before = diags.error_count
    names = auto_names(layers)
    nodes: list[Node] = []
    aliases: dict[str, str] = {}  # a layer switched off by `when` -> the value it passes on
    failed: set[str] = set()
    duplicated: set[str] = set()
    defined: dict[str, SpecPath] = {n: (*path, "inputs", i) for i, n in enumerate(input_names)}
    for index, (layer, name) in enumerate(zip(layers, names, strict=True)):
        layer_path = (*path, "layers", index)
        if name in defined:
            duplicated.add(name)
        _check_layer_name(name, layer_path, defined, diags)
        defined.setdefault(name, layer_path)
        layer = substituted(layer, layer_path, scope, diags)
        if layer is None:
            failed.add(name)
            continue
        if layer.inputs:
            inputs = layer.inputs
        elif isinstance(layer.op, str) and ops.takes_no_inputs(layer.op):
            inputs = ()  # a source (parameter, constant) reads nothing: no implicit edge
        elif index > 0:
            inputs = (names[index - 1],)
        elif len(input_names) == 1:
            inputs = (input_names[0],)
        else:
            diags.error(
                layer_path,
                "the first layer must name its inputs when there are several",
                "add inputs: [" + ", ".join(input_names) + "]",
            )
            failed.add(name)
            continue
        if layer.when is not None and not switched_on(layer, layer_path, diags):
            if len(inputs) == 1:
                aliases[name] = inputs[0]
            else:
                diags.error(
                    (*layer_path, "when"),
                    f"layer {name!r} is switched off, so it passes its input on, "
                    f"but it has {len(inputs)} inputs",
                    "give it one input",
                )
                failed.add(name)
            continue
        node = layer_node(layer, name, tuple(inputs), layer_path, scope, diags)
        if node is not None and not layer.trainable:
            node = attrs.evolve(node, trainable=False)
        if node is not None:
            nodes.append(node)
        else:
            failed.add(name)  # reported; layers reading it are not told it is unknown
    nodes = [attrs.evolve(n, inputs=tuple(_follow(i, aliases) for i in n.inputs)) for n in nodes]
    declared_outputs = bool(outputs)
    outputs = tuple(_follow(o, aliases) for o in outputs) or (
        (_follow(names[-1], aliases),) if names else ()
    )
    in_block = scope.params is not None
    _check_edges(nodes, input_names, outputs, path, diags, in_block, failed, duplicated)
    nodes = _with_shared_ops(nodes)
    if diags.error_count == errors_before:
        ordered = topological(nodes, set(input_names), diags)
        if ordered is None:
            return None
        # The last layer is the output only by default: said once, with what else was left.
        by_default = not declared_outputs and not in_block
        warn_unreachable(ordered, outputs, diags, by_default)
        return Graph((), tuple(ordered), outputs, input_names)
    if not partial:
        return None
    # Reported already: names given twice and layers reading themselves are read by
    # nobody, and what is no layer (a failed or unknown one) counts as there, unread.
    broken = duplicated | {n.name for n in nodes if n.name in n.dependencies()}
    known = {n.name for n in nodes} - broken
    ready = {d for n in nodes for d in n.dependencies() if d not in known} | set(input_names)
    ordered = topological(nodes, ready, diags)
    if ordered is None:
        return None
    return Graph((), tuple(ordered), outputs, input_names, False, frozenset(broken))


def _with_shared_ops(nodes: list[Node]) -> list[Node]:
    """A shared node points at the node that owns the module (never at another sharer) and
    shows that node's op."""
    by_name = {n.name: n for n in nodes}
    resolved = []
    for node in nodes:
        owner, seen = node, set()
        while owner.shares is not None and owner.shares in by_name and owner.name not in seen:
            seen.add(owner.name)
            owner = by_name[owner.shares]
        if node.shares is not None and owner.shares is None:
            node = attrs.evolve(node, op=owner.op, shares=owner.name)
        resolved.append(node)
    return resolved


def _follow(name: str, aliases: Mapping[str, str]) -> str:
    seen = set()
    while name in aliases and name not in seen:
        seen.add(name)
        name = aliases[name]
    return name


def _check_layer_name(
    name: str, path: SpecPath, defined: Mapping[str, SpecPath], diags: Diagnostics
) -> None:
    if not _NAME.fullmatch(name):
        diags.error((*path, "name"), f"layer name {name!r} is not an ASCII identifier", _NAME_HINT)
    elif name in RESERVED_NAMES:
        diags.error(
            (*path, "name"),
            f"layer name {name!r} is reserved: torch.nn.Module or tdsl keeps an attribute "
            "of that name on the module holding the layer",
            "choose another name",
        )
    elif name in defined:
        diags.error(
            (*path, "name"),
            f"duplicate name {name!r}",
            f"first used at {format_path(defined[name])}",
        )


def _check_edges(
    nodes: list[Node],
    input_names: tuple[str, ...],
    outputs: tuple[str, ...],
    path: SpecPath,
    diags: Diagnostics,
    outputs_may_be_inputs: bool = False,
    failed: set[str] = frozenset(),
    duplicated: set[str] = frozenset(),
) -> None:
    by_name = {n.name: n for n in nodes}
    known = set(input_names) | set(by_name) | set(failed)
    for node in nodes:
        for position, source in enumerate(node.inputs):
            if source == node.name and source in duplicated:
                continue  # the second of two layers named alike reads the first: one error
            if source == node.name:
                diags.error(
                    (*node.path, "inputs", position), f"layer {node.name!r} takes itself as input"
                )
            elif source not in known:
                diags.error(
                    (*node.path, "inputs", position),
                    f"unknown input {source!r}",
                    did_you_mean(source, known - {node.name}),  # not itself
                )
        if node.shares is not None and node.shares not in by_name and node.shares not in failed:
            diags.error(
                (*node.path, "share"),
                f"share: {node.shares!r} names no layer of this graph",
                did_you_mean(node.shares, [n for n in by_name if n != node.name]),
            )
    for position, out in enumerate(outputs):
        if out in input_names and not outputs_may_be_inputs:
            diags.error(
                (*path, "outputs", position),
                f"output {out!r} is a model input, not a layer",
                did_you_mean(out, list(by_name)),
            )
        elif out not in known:
            diags.error(
                (*path, "outputs", position), f"unknown output {out!r}", did_you_mean(out, known)
            )
    if not outputs:
        diags.error((*path, "outputs"), "the model has no output")
