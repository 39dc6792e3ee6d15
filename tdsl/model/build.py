"""Build a resolved graph into modules, propagating tensors through it.

Validation builds on the `meta` device: every layer is constructed on shape-only tensors
and its output read off a shape rule (`tdsl.registry.shape_rules`) or, for other layers,
found by running it there, so shapes and dtypes are checked and parameters counted with
nothing allocated. Compilation reuses the same path and then constructs each layer again on
a real device. This module walks the graph and its block uses; one node is built and run
by `tdsl.model.node_build`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tdsl.errors import Diagnostics
from tdsl.model import batch_rule
from tdsl.model.arguments import check_arguments
from tdsl.model.graph import Graph, Node
from tdsl.model.modules import GraphModule, Repeated
from tdsl.model.node_build import build_node, describe, run_node, through_rules
from tdsl.model.ties import tie_parameters
from tdsl.registry import ops
from tdsl.registry.aliases import suggest
from tdsl.registry.ops import BATCH, DTYPES
from tdsl.registry.refusals import refusal_hint
from tdsl.registry.user_code import ImportRefused


def example_inputs(graph: Graph, batch_size: int, device: str = "meta") -> dict[str, torch.Tensor]:
    return {
        i.name: torch.empty((batch_size, *i.shape), dtype=DTYPES[i.dtype], device=device)
        for i in graph.inputs
    }


def build_graph(
    graph: Graph,
    diags: Diagnostics,
    device: str | torch.device = "meta",
    allow_imports: Sequence[str] = (),
) -> tuple[GraphModule | None, dict[str, Any]]:
    """Build every node; return the module (None if any node failed) and the value of every
    node, keyed by its module path (`layer1.0.conv1`; a block use's inputs too).

    Values are always meta tensors; with a real `device` the module is then constructed
    there from them (`materialize`), so parameter initialization consumes the RNG as a
    hand-written model defining the same layers in the same order would.
    """
    values: dict[str, Any] = dict(example_inputs(graph, BATCH))  # batch_rule reads it
    # Where each value's batch dimension is (see batch_rule), keyed like `values`.
    layouts: dict[str, batch_rule.Layout] = {name: batch_rule.INPUT for name in values}
    module = _Builder(diags, allow_imports, values, layouts).graph(graph, "")
    for name in graph.broken:
        values.pop(name, None)  # which of the layers named alike it holds is arbitrary
    outputs_ok = _batch_major_outputs(graph, values, layouts, diags)
    if module is not None and not (outputs_ok and tie_parameters(graph, module, "", module, diags)):
        module = None
    if module is not None and str(device) != "meta":
        module = materialize(graph, values, device, allow_imports)
    return module, values


def _batch_major_outputs(
    graph: Graph, values: dict[str, Any], layouts: dict[str, Any], diags: Diagnostics
) -> bool:
    """Whether every model output has the batch at dimension 0; a refused one is dropped
    from `values`, so later checks (the loss) do not report it again."""
    ok = True
    for node in graph.nodes:
        if node.name not in graph.outputs or node.name not in values:
            continue
        problem = batch_rule.output_problem(values[node.name], layouts[node.name])
        if problem is not None:
            diags.error(node.path, f"layer {node.name!r} ({node.op}) {problem[0]}", problem[1])
            del values[node.name]
            ok = False
    return ok


def materialize(
    graph: Graph,
    values: dict[str, Any],
    device: str | torch.device,
    allow_imports: Sequence[str] = (),
) -> GraphModule:
    """The module of a graph that `build_graph` has checked, built on `device` from the
    meta values it inferred (no second inference), in graph order, so initialization
    consumes the RNG as a hand-written model defining the same layers would."""
    with torch.device(device):
        module = _Builder(Diagnostics(), allow_imports, values, infer=False).graph(graph, "")
    assert module is not None, "materialize needs a graph that build_graph has checked"
    tie_parameters(graph, module, "", module, Diagnostics())
    return module


class _Builder:
    """One pass over a graph and the graphs of its block uses. Inferring, it builds each
    layer on meta and records its output in `values` and where the output's batch
    dimension is in `layouts`; otherwise it builds on the current device from the values
    recorded before."""

    def __init__(
        self,
        diags: Diagnostics,
        allow_imports: Sequence[str],
        values: dict[str, Any],
        layouts: dict[str, batch_rule.Layout] | None = None,
        infer: bool = True,
    ):
        self.diags, self.allow_imports, self.infer = diags, allow_imports, infer
        self.values, self.layouts = values, {} if layouts is None else layouts

    def graph(self, graph: Graph, prefix: str) -> GraphModule | None:
        layers: dict[str, nn.Module] = {}
        failed = not graph.complete  # its nodes are checked, but it makes no module
        for node in graph.nodes:
            path = prefix + node.name
            plain = node.shares is None and node.body is None and not node.copies
            if self.infer and plain and self.op(node) is None:
                failed = True  # its arguments are checked even when an upstream node failed
                continue
            if node.shares in graph.broken or any(
                prefix + s not in self.values or s in graph.broken for s in node.inputs
            ):
                failed = True  # an upstream node failed and was reported already
                continue
            inputs = [self.values[prefix + s] for s in node.inputs]
            layouts = [self.layouts.get(prefix + s) for s in node.inputs]
            if node.shares is not None:
                layer = layers.get(node.shares)
                ran = None
                if layer is not None and self.infer:
                    ran = self.shared(node, layer, inputs, layouts, prefix)
            else:
                layer, ran = self.node(node, inputs, layouts, path)
                if layer is not None:
                    layers[node.name] = layer
            if layer is None or (self.infer and ran is None):
                failed = True
                continue
            if self.infer:
                self.values[path], self.layouts[path] = ran
        return None if failed else GraphModule(graph, layers)

    def node(
        self, node: Node, inputs: list[Any], layouts: list[Any], path: str
    ) -> tuple[nn.Module | None, tuple[Any, Any] | None]:
        """The node's module and, inferring, its (output, layout)."""
        if node.copies:
            copies, values, places = [], inputs, layouts
            for copy in node.copies:
                copy_path = f"{path}.{copy.name}"
                layer, ran = self.node(copy, values, places, copy_path)
                if layer is None:
                    return None, None
                copies.append(layer)
                if self.infer:
                    self.values[copy_path], self.layouts[copy_path] = ran
                # Each copy reads the one before; further inputs reach every copy.
                values = [self.values[copy_path], *inputs[1:]]
                places = [self.layouts.get(copy_path), *layouts[1:]]
            return Repeated(copies), (values[0], places[0])
        if node.body is not None:
            for name, value, place in zip(node.body.input_names, inputs, layouts, strict=True):
                self.values[f"{path}.{name}"] = value
                self.layouts[f"{path}.{name}"] = place
            body = self.graph(node.body, f"{path}.")
            if body is None or not self.infer:
                return body, None
            outs = [f"{path}.{o}" for o in node.body.outputs]
            if len(outs) == 1:
                return body, (self.values[outs[0]], self.layouts[outs[0]])
            return body, (
                tuple(self.values[o] for o in outs),
                tuple(self.layouts[o] for o in outs),
            )
        if not self.infer:
            return ops.lookup(node.op, self.allow_imports).build(dict(node.args), inputs), None
        op = self.op(node)
        if op is None:
            return None, None
        layer = build_node(node, op, inputs, self.diags)
        if layer is None:
            return None, None
        ran = run_node(node, op, layer, inputs, layouts, self.diags)
        return (None, None) if ran is None else (layer, ran)

    def shared(
        self, node: Node, layer: nn.Module, inputs: list[Any], layouts: list[Any], prefix: str
    ) -> tuple[Any, Any] | None:
        """The output of a module applied again: a plain op is checked as when it was built;
        a block use or repeat gives its values the layout it gave the first time."""
        op = None if isinstance(layer, GraphModule | Repeated) else ops.lookup(node.op)
        if op is not None:
            return run_node(node, op, layer, inputs, layouts, self.diags)
        try:
            output = through_rules(layer, inputs)
        except Exception as exc:  # shapes the shared block cannot take: say which and why
            received = ", ".join(describe(v) for v in inputs)
            self.diags.error(
                node.path,
                f"layer {node.name!r} (shares {node.shares}) cannot take input {received}: "
                "the shared layers refused it",
                refusal_hint(exc),
            )
            return None
        return output, self.layouts.get(prefix + node.shares)

    def op(self, node: Node) -> ops.OpDef | None:
        try:
            op = ops.lookup(node.op, self.allow_imports)
        except ImportRefused as exc:
            self.diags.error((*node.path, "op"), exc.message, exc.hint)
            return None
        if op is None:
            self.diags.error(
                (*node.path, "op"),
                f"unknown op {node.op!r}",
                suggest("op", node.op, ops.all_op_names()),
            )
            return None
        return op if check_arguments(node, op, self.diags) else None
