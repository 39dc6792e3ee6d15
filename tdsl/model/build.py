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
from tdsl.model.graph import Graph, Node
from tdsl.model.modules import GraphModule, Repeated
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
    batch_size: int = BATCH,
    device: str | torch.device = "meta",
    allow_imports: Sequence[str] = (),
) -> tuple[GraphModule | None, dict[str, Any]]:
    """Build every node; return the module (None if any node failed) and the value of every
    node, keyed by its module path (`layer1.0.conv1`; a block use's inputs too).

    Values are always meta tensors; with a real `device` the module is then constructed
    there from them (`materialize`), so parameter initialization consumes the RNG as a
    hand-written model defining the same layers in the same order would.
    """
    values: dict[str, Any] = dict(example_inputs(graph, batch_size))
    module = _Builder(diags, allow_imports, values).graph(graph, "")
    if module is not None and not _tie(graph, module, "", module, diags):
        module = None
    if module is not None and str(device) != "meta":
        module = materialize(graph, values, device, allow_imports)
    return module, values


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
    _tie(graph, module, "", module, Diagnostics())
    return module


class _Builder:
    """One pass over a graph and the graphs of its block uses. Inferring, it builds each
    layer on meta and records its output in `values`; otherwise it builds on the current
    device from the values recorded before."""

    def __init__(
        self,
        diags: Diagnostics,
        allow_imports: Sequence[str],
        values: dict[str, Any],
        infer: bool = True,
    ):
        self.diags, self.allow_imports, self.values, self.infer = (
            diags,
            allow_imports,
            values,
            infer,
        )

    def graph(self, graph: Graph, prefix: str) -> GraphModule | None:
        layers: dict[str, nn.Module] = {}
        failed = False
        for node in graph.nodes:
            path = prefix + node.name
            plain = node.shares is None and node.body is None and not node.copies
            if self.infer and plain and self.op(node) is None:
                failed = True  # its arguments are checked even when an upstream node failed
                continue
            if any(prefix + s not in self.values for s in node.inputs):
                failed = True  # an upstream node failed and was reported already
                continue
            inputs = [self.values[prefix + s] for s in node.inputs]
            if node.shares is not None:
                layer = layers.get(node.shares)
                output = None if layer is None or not self.infer else self.run(node, layer, inputs)
            else:
                layer, output = self.node(node, inputs, path)
                if layer is not None:
                    layers[node.name] = layer
            if layer is None or (self.infer and output is None):
                failed = True
                continue
            if self.infer:
                self.values[path] = output
        return None if failed else GraphModule(graph, layers)

    def node(self, node: Node, inputs: list[Any], path: str) -> tuple[nn.Module | None, Any]:
        if node.copies:
            copies, value = [], inputs
            for copy in node.copies:
                layer, output = self.node(copy, value, f"{path}.{copy.name}")
                if layer is None:
                    return None, None
                copies.append(layer)
                if self.infer:
                    self.values[f"{path}.{copy.name}"] = output
                value = [self.values[f"{path}.{copy.name}"], *inputs[1:]]
            return Repeated(copies), value[0]
        if node.body is not None:
            for name, value in zip(node.body.input_names, inputs, strict=True):
                self.values[f"{path}.{name}"] = value
            body = self.graph(node.body, f"{path}.")
            if body is None or not self.infer:
                return body, None
            outs = [self.values[f"{path}.{o}"] for o in node.body.outputs]
            return body, outs[0] if len(outs) == 1 else tuple(outs)
        if not self.infer:
            return ops.lookup(node.op, self.allow_imports).build(dict(node.args), inputs), None
        op = self.op(node)
        if op is None:
            return None, None
        layer = _build_node(node, op, inputs, self.diags)
        return (None, None) if layer is None else (layer, self.run(node, layer, inputs))

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
                did_you_mean(node.op, ops.all_op_names()),
            )
            return None
        return op if check_arguments(node, op, self.diags) else None

    def run(self, node: Node, layer: nn.Module, inputs: list[Any]) -> Any:
        return _run_node(node, layer, inputs, self.diags)


def _tie(graph: Graph, module: nn.Module, prefix: str, root: nn.Module, diags: Diagnostics) -> bool:
    """Make each `tie` parameter the very parameter it names (as nanoGPT ties `lm_head`
    to `wte`): one tensor, counted, optimized and saved once."""
    ok = True
    for node in graph.nodes:
        if node.body is not None:
            ok = _tie(node.body, module, f"{prefix}{node.name}.", root, diags) and ok
        for own, source in node.ties.items():
            where = (*node.path, "tie", own)
            names = dict(root.named_parameters())
            if node.copies:
                diags.error(where, "a repeated layer cannot tie its parameters", "tie one layer")
                ok = False
                continue
            if source not in names:
                diags.error(
                    where, f"no parameter {source!r} to tie to", did_you_mean(source, names)
                )
                ok = False
                continue
            owner_path, _, attr = f"{prefix}{node.name}.{own}".rpartition(".")
            owner = root.get_submodule(owner_path)
            mine = owner._parameters.get(attr)
            if mine is None:
                mine_names = [
                    n for n, _ in root.get_submodule(prefix + node.name).named_parameters()
                ]
                diags.error(
                    where,
                    f"layer {node.name!r} has no parameter {own!r}",
                    did_you_mean(own, mine_names),
                )
                ok = False
            elif mine.shape != names[source].shape:
                diags.error(
                    where,
                    f"cannot tie {own!r} {list(mine.shape)} to {source!r} "
                    f"{list(names[source].shape)}: the shapes differ",
                )
                ok = False
            else:
                setattr(owner, attr, names[source])
    return ok


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
        # A "masked" op's last input is a bool or integer mask, which the op checks itself.
        masked = op.input_kind == "masked" and len(tensors) > 1
        for value in tensors[:-1] if masked else tensors:
            if not value.is_floating_point():
                diags.error(
                    node.path,
                    f"layer {node.name!r} ({node.op}) expects a floating-point "
                    f"input, got {describe(value)}",
                    "integer inputs are ids: feed them to an embedding first",
                )
                return None
    return layer


def _run_node(node: Node, layer: nn.Module, inputs: Sequence[Any], diags: Diagnostics):
    try:
        x = inputs[0] if len(inputs) == 1 else None
        if isinstance(layer, nn.RNNBase) and isinstance(x, torch.Tensor) and x.dim() == 2:
            # torch would read [batch, features] as one unbatched sequence whose steps are
            # the batch: never what a spec means, and thousands of meta steps to find out.
            raise ops.OpError(
                f"needs a [batch, steps, features] input, got {shape_text(x.shape)}",
                hint="declare the input's per-sample shape as [steps, features]",
            )
        known = shapes.output_of(layer, inputs)
        return layer(*inputs) if known is None else known
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
