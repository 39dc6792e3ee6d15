"""An op's keyword arguments checked before torch sees them: names (with did-you-mean),
required ones, sizes that must be positive, probabilities, int64 bounds, and the number of
inputs, each located at the argument."""

from __future__ import annotations

from typing import Any

from tdsl.errors import Diagnostics, check_keywords
from tdsl.model.graph import Node
from tdsl.registry import ops
from tdsl.wording import show

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
# Steps and spacings: 0 would divide by zero inside torch (None keeps torch's default).
_POSITIVE_OR_NULL = {"stride", "dilation", "groups", "num_groups"}
# Amounts added around the input: 0 is fine, a negative one crops (or crashes) silently.
_NON_NEGATIVE = {"padding", "output_padding"}
# Stacks deeper than any trained model, whose construction alone would take minutes.
_AT_MOST = {"num_layers": 1024}


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
        elif key in _POSITIVE_OR_NULL and value is not None and not _all_positive_ints(value):
            if not (key == "groups" and value == "in_channels"):  # conv's own word, checked there
                diags.error((*node.path, key), f"must be a positive integer (got {show(value)})")
                ok = False
        elif (
            key in _NON_NEGATIVE
            and "pad" not in node.op.lower()  # a padding layer's negative padding crops
            and not isinstance(value, str)
            and not _all_ints(value, 0)
        ):
            diags.error(
                (*node.path, key),
                f"must be a whole number >= 0, or one per dimension (got {show(value)})",
            )
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
    return _all_ints(value, 1)


def _all_ints(value: Any, least: int) -> bool:
    values = value if isinstance(value, tuple) else (value,)
    return all(isinstance(v, int) and not isinstance(v, bool) and v >= least for v in values)
