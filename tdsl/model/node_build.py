"""One node on the meta device: constructing its layer (input dtypes checked, torch's
refusal of its arguments reported at the node) and running it (through a shape rule where
the layer has one, with the batch's layout checked). `tdsl.model.build` walks the graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tdsl.errors import Diagnostics
from tdsl.model import batch_rule
from tdsl.model.graph import Node
from tdsl.model.modules import GraphModule, Repeated
from tdsl.registry import ops
from tdsl.registry import shape_rules as shapes
from tdsl.registry.meta_tensors import SkipMetaInit
from tdsl.registry.ops import shape_text
from tdsl.registry.refusals import check_window_input, refusal_hint
from tdsl.wording import show


def describe(value: Any) -> str:
    """`[B, 3] float32` — shown for the value entering or leaving a node."""
    if isinstance(value, torch.Tensor):
        return f"{shape_text(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    if isinstance(value, tuple | list):
        return "(" + ", ".join(describe(v) for v in value) + ")"
    return type(value).__name__


def build_node(
    node: Node, op: ops.OpDef, inputs: Sequence[Any], diags: Diagnostics
) -> nn.Module | None:
    """The node's layer, constructed on meta without running initializers; None when its
    inputs' dtypes or torch's argument checks refuse it (reported, located at the node)."""
    tensors = [v for v in inputs if isinstance(v, torch.Tensor)]
    if op.input_kind == "int" and any(t.is_floating_point() for t in tensors):
        diags.error(
            node.path,
            f"op {node.op!r} expects integer ids, got {describe(inputs[0])}",
            "declare the input with dtype: int64",
        )
        return None
    try:
        with SkipMetaInit(), torch.device("meta"):
            layer = op.build(dict(node.args), inputs)
    except ops.OpError as exc:
        diags.error(
            (*node.path, exc.key) if exc.key else node.path,
            f"layer {node.name!r} ({node.op}) {exc.message}",
            exc.hint,
        )
        return None
    except Exception as exc:  # torch's own argument checks: report them, located at the node
        diags.error(
            node.path,
            f"layer {node.name!r} ({node.op}) cannot be built with {show(dict(node.args))}: "
            "torch refused these arguments",
            refusal_hint(exc),
        )
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


def through_rules(layer: nn.Module, inputs: Sequence[Any]) -> Any:
    """A block or repeat applied again on meta, each layer through its shape rule where it
    has one: running layers on meta imports torch's compiler stack (seconds)."""
    if isinstance(layer, GraphModule | Repeated):
        return layer.apply_layers(through_rules, *inputs)
    known = shapes.output_of(layer, inputs)
    return layer(*inputs) if known is None else known


def run_node(
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
        check_window_input(layer, inputs)
        output = run(inputs)
        return output, batch_rule.output_layout(op, layer, inputs, layouts, output, run)
    except ops.OpError as exc:
        diags.error(node.path, f"layer {node.name!r} ({node.op}) {exc.message}", exc.hint)
    except Exception as exc:  # a shape or dtype torch refuses: say which node and what came in
        received = ", ".join(describe(v) for v in inputs)
        diags.error(
            node.path,
            f"layer {node.name!r} ({node.op}) with {show(dict(node.args))} cannot take input "
            f"{received}: torch refused this input",
            refusal_hint(exc),
        )
    return None
