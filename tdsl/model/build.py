"""Build a resolved graph into modules, propagating tensors through it.

Validation builds on the `meta` device: every layer is constructed on shape-only tensors
and its output read off a shape rule (`tdsl.shapes`) or, for other layers, found by running
it there, so shapes and dtypes are checked and parameters counted with nothing allocated.
Compilation reuses the same path and then constructs each layer again on a real device.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tdsl.errors import Diagnostics, check_keywords, did_you_mean, show
from tdsl.model import batch_rule
from tdsl.model.graph import Graph, Node
from tdsl.registry import ops
from tdsl.registry import shape_rules as shapes
from tdsl.registry.ops import BATCH, DTYPES, shape_text
from tdsl.registry.user_code import ImportRefused

# Arguments that are sizes wherever they appear: checked before torch sees them.
_POSITIVE = {
    "out_features",
    "out_channels",
    "hidden_size",
    "num_layers",
    "num_embeddings",
    "embedding_dim",
    "nhead",
    "num_heads",
    "kernel_size",
    "dim_feedforward",
    "in_features",
    "in_channels",
    "num_features",
    "input_size",
    "embed_dim",
    "d_model",
    "output_size",
}
_PROBABILITY = {"p", "dropout"}
# Stacks deeper than any trained model, whose construction alone would take minutes.
_AT_MOST = {"num_layers": 1024}


class GraphModule(nn.Module):
    """A layer graph as a plain module. Submodules are named after the nodes, so its
    `state_dict` keys (`linear1.weight`) match a hand-written `nn.Sequential` using the same
    names."""

    def __init__(self, graph: Graph, layers: dict[str, nn.Module]):
        super().__init__()
        for name, layer in layers.items():
            self.add_module(name, layer)
        self.input_names = tuple(i.name for i in graph.inputs)
        self.output_names = graph.outputs
        self.plan = tuple((n.name, n.inputs) for n in graph.nodes)
        # A plain chain (each node reads the one before, the last is the output) runs without
        # the name lookups, which cost more than tiny layers do.
        previous = self.input_names
        chain = bool(graph.nodes) and len(previous) == 1
        chain = chain and graph.outputs == (graph.nodes[-1].name,)
        for node in graph.nodes:
            chain = chain and tuple(node.inputs) == tuple(previous)
            previous = (node.name,)
        self.chain = tuple(layers[n.name] for n in graph.nodes) if chain else None

    def forward(self, *inputs: Any) -> Any:
        if self.chain is not None:
            (value,) = inputs
            for layer in self.chain:
                value = layer(value)
            return value
        values = dict(zip(self.input_names, inputs, strict=True))
        for name, sources in self.plan:
            values[name] = self._modules[name](*[values[s] for s in sources])
        if len(self.output_names) == 1:
            return values[self.output_names[0]]
        return tuple(values[o] for o in self.output_names)


def example_inputs(graph: Graph, batch_size: int, device: str = "meta") -> dict[str, torch.Tensor]:
    return {
        i.name: torch.empty((batch_size, *i.shape), dtype=DTYPES[i.dtype], device=device)
        for i in graph.inputs
    }


def describe(value: Any) -> str:
    """`[B, 3] float32` — shown for the value entering or leaving a node."""
    if isinstance(value, torch.Tensor):
        return f"{shape_text(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    if isinstance(value, tuple | list):
        return "(" + ", ".join(describe(v) for v in value) + ")"
    return type(value).__name__


def check_arguments(node: Node, op: ops.OpDef, diags: Diagnostics) -> bool:
    what = f"op {node.op!r}"
    ok = check_keywords(node.args, op.arguments, what, node.path, diags, op.inferred)
    for key, value in node.args.items():
        if key not in op.arguments:
            continue
        if key in _AT_MOST and isinstance(value, int) and value > _AT_MOST[key]:
            diags.error(
                (*node.path, key),
                f"must be at most {_AT_MOST[key]} (got {value}); inference builds every layer",
            )
            ok = False
            continue
        too_big = [
            v
            for v in (value if isinstance(value, tuple) else (value,))
            if isinstance(v, int) and abs(v) > 2**63 - 1
        ]
        if too_big:
            diags.error((*node.path, key), f"must be at most 2**63 - 1 (got {show(too_big[0])})")
            ok = False
            continue
        if key in _POSITIVE and not _all_positive_ints(value):
            diags.error((*node.path, key), f"must be a positive integer (got {show(value)})")
            ok = False
        elif key in _PROBABILITY and not (
            isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1
        ):
            diags.error((*node.path, key), f"must be a probability in [0, 1] (got {show(value)})")
            ok = False
    count = len(node.inputs)
    if count < op.min_inputs or (op.max_inputs is not None and count > op.max_inputs):
        most = "any number of" if op.max_inputs is None else str(op.max_inputs)
        expected = (
            str(op.min_inputs) if op.min_inputs == op.max_inputs else f"{op.min_inputs} to {most}"
        )
        diags.error((*node.path, "inputs"), f"op {node.op!r} takes {expected} inputs, got {count}")
        ok = False
    return ok


def _all_positive_ints(value: Any) -> bool:
    values = value if isinstance(value, tuple) else (value,)
    return all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)


def build_graph(
    graph: Graph,
    diags: Diagnostics,
    device: str | torch.device = "meta",
    allow_imports: Sequence[str] = (),
) -> tuple[GraphModule | None, dict[str, Any]]:
    """Build every node; return the module (None if any node failed) and each node's value.

    Values are always meta tensors; with a real `device`, layers are constructed a second
    time there, in graph order, so parameter initialization consumes the RNG as a
    hand-written model defining the same layers in the same order would.
    """
    values: dict[str, Any] = example_inputs(graph, BATCH)  # batch_rule reads this marker
    # Where each value's batch dimension is (see batch_rule).
    layouts: dict[str, batch_rule.Layout] = {name: batch_rule.INPUT for name in values}
    layers: dict[str, nn.Module] = {}
    failed = False
    for node in graph.nodes:
        try:
            op = ops.lookup(node.op, allow_imports)
        except ImportRefused as exc:
            diags.error((*node.path, "op"), exc.message, exc.hint)
            failed = True
            continue
        if op is None:
            diags.error(
                (*node.path, "op"),
                f"unknown op {node.op!r}",
                did_you_mean(node.op, ops.all_op_names()),
            )
            failed = True
            continue
        if not check_arguments(node, op, diags):
            failed = True
            continue
        if any(s not in values for s in node.inputs):
            failed = True  # an upstream node failed and was reported already
            continue
        inputs = [values[s] for s in node.inputs]
        layer = _build_node(node, op, inputs, diags)
        if layer is None:
            failed = True
            continue
        ran = _run_node(node, op, layer, inputs, [layouts[s] for s in node.inputs], diags)
        if ran is None:
            failed = True
            continue
        values[node.name], layouts[node.name] = ran
        if str(device) != "meta":
            with torch.device(device):
                layer = op.build(dict(node.args), inputs)
        layers[node.name] = layer
    failed = not _batch_major_outputs(graph, values, layouts, diags) or failed
    return (None if failed else GraphModule(graph, layers)), values


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
    layers = {}
    with torch.device(device):
        for node in graph.nodes:
            op = ops.lookup(node.op, allow_imports)
            layers[node.name] = op.build(dict(node.args), [values[s] for s in node.inputs])
    return GraphModule(graph, layers)


def _build_node(node: Node, op: ops.OpDef, inputs: Sequence[Any], diags: Diagnostics):
    tensors = [v for v in inputs if isinstance(v, torch.Tensor)]
    if op.input_kind == "int" and any(t.is_floating_point() for t in tensors):
        diags.error(
            node.path,
            f"op {node.op!r} expects integer ids, got {describe(inputs[0])}",
            "declare the input with dtype: int64",
        )
        return None
    try:
        with shapes.SkipMetaInit(), torch.device("meta"):
            layer = op.build(dict(node.args), inputs)
    except ops.OpError as exc:
        diags.error(
            (*node.path, exc.key) if exc.key else node.path,
            f"layer {node.name!r} ({node.op}) {exc.message}",
            exc.hint,
        )
        return None
    except Exception as exc:  # torch's own argument checks: report them, located at the node
        diags.error(node.path, f"cannot build layer {node.name!r} ({node.op}): {_first_line(exc)}")
        return None
    floating_params = any(p.is_floating_point() for p in layer.parameters())
    if floating_params and op.input_kind != "int":
        for value in tensors:
            if not value.is_floating_point():
                diags.error(
                    node.path,
                    f"layer {node.name!r} ({node.op}) expects a floating-point "
                    f"input, got {describe(value)}",
                    "integer inputs are ids: feed them to an embedding first",
                )
                return None
    return layer


def _run_node(
    node: Node,
    op: ops.OpDef,
    layer: nn.Module,
    inputs: Sequence[Any],
    layouts: Sequence[batch_rule.Layout],
    diags: Diagnostics,
) -> tuple[Any, batch_rule.Layout] | None:
    """The node's output and where its batch dimension is, or None (reported)."""

    def run(values: Sequence[Any]) -> Any:
        known = shapes.output_of(layer, values)
        return layer(*values) if known is None else known

    try:
        batch_rule.check_inputs(layer, inputs, layouts)
        output = run(inputs)
        return output, batch_rule.output_layout(op, layer, inputs, layouts, output, run)
    except ops.OpError as exc:
        diags.error(node.path, f"layer {node.name!r} ({node.op}) {exc.message}", exc.hint)
    except Exception as exc:  # a shape or dtype torch refuses: say which node and what came in
        received = ", ".join(describe(v) for v in inputs)
        diags.error(
            node.path,
            f"layer {node.name!r} ({node.op}) cannot take input {received}: {_first_line(exc)}",
        )
    return None


def _first_line(exc: BaseException) -> str:
    """torch's message, first line, with the inference batch size shown as B."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return re.sub(rf"\b{BATCH}\b", "B", first)
