"""The loss against the model's output and the data's targets: whether the output is the
kind the loss expects (logits, probabilities), whether its shape fits the targets, and
whether torch accepts the loss on stand-in tensors of those shapes. Each check appends
diagnostics; none raises. (Resolving the loss's names and arguments, and the metrics:
`outputs_and_targets`.)"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from tdsl import spec as S
from tdsl.check.class_targets import check_ignore_index, class_axis
from tdsl.check.loss_arguments import check_weight_sizes, report_refusal, run_each_term
from tdsl.check.outputs_and_targets import kinds_text, resolve_loss
from tdsl.check.per_output import check_outputs_loss
from tdsl.data import data_signature
from tdsl.errors import Diagnostics, SpecPath
from tdsl.model.graph import Graph
from tdsl.model.node_build import describe
from tdsl.registry.losses import LossDef, PerPosition, build_loss, lookup_loss, loss_names
from tdsl.registry.ops import shape_text

_PROBABILITY_OPS = {
    "sigmoid": "probabilities",
    "softmax": "probabilities",
    "log_softmax": "log_probabilities",
    "logsoftmax": "log_probabilities",
}


def output_kind(graph: Graph) -> tuple[str, str]:
    """(kind of values the model returns, name of the node producing them)."""
    last = next(n for n in graph.nodes if n.name == graph.outputs[0]) if graph.nodes else None
    if last is None:
        return "values", graph.outputs[0]
    return _PROBABILITY_OPS.get(last.op.lower().removeprefix("nn."), "logits"), last.name


def check_loss(
    spec: S.Spec,
    graph: Graph | None,
    output: Any,
    diags: Diagnostics,
    allow_imports: Sequence[str] = (),
) -> LossDef | None:
    before = diags.error_count
    loss = resolve_loss(spec.loss, diags, allow_imports)
    if loss is None:
        return None
    # A loss already reported (an argument out of range) is not run on stand-ins too.
    runnable = diags.error_count == before
    if spec.loss.kind == "outputs":
        check_outputs_loss(spec, graph, output, diags, allow_imports)
        return loss
    signature = data_signature(spec, allow_imports)
    target = signature.target
    if spec.loss.class_dim is not None and target.kind != "class":
        diags.error(
            ("loss", "class_dim"),
            f"class_dim applies to class targets; the data yields {target.kind} targets",
            "remove class_dim",
        )
    if target.kind not in loss.targets:
        fitting = [
            n
            for n in loss_names()
            if n not in ("sum", "outputs") and target.kind in lookup_loss(n).targets
        ]
        diags.error(
            ("loss", "kind"),
            f"loss {loss.name!r} needs {kinds_text(loss.targets)} targets, "
            f"but the data yields {target.kind} targets",
            "losses for these targets: " + ", ".join(fitting),
        )
        return loss
    check_ignore_index(spec, signature, diags, allow_imports)
    if graph is None or output is None:
        return loss
    if not isinstance(output, torch.Tensor):
        diags.error(
            ("model", "outputs"),
            f"the loss takes one tensor, the model returns {describe(output)}",
            "list one node in model.outputs, pick with 'item', or give each output its own "
            "loss with kind: outputs",
        )
        return loss
    produced, node = output_kind(graph)
    where = ("model", "layers", _layer_index(graph, node))
    if _check_output_shape(spec.loss, loss, target, output, where, diags) and runnable:
        _try_loss(spec, target, output, diags, allow_imports)
    if loss.expects == "probabilities" and produced != "probabilities":
        diags.error(
            where,
            f"loss {loss.name!r} expects probabilities, but the output {node!r} "
            "is not a sigmoid or softmax",
            "end the model with sigmoid, or use bce_with_logits"
            if target.kind == "binary"
            else "end with softmax",
        )
    elif loss.expects == "logits" and produced == "probabilities":
        diags.warning(
            where,
            f"loss {loss.name!r} applies its own sigmoid/softmax, but the output "
            f"{node!r} is already one (double sigmoid)",
            "remove the final layer, or use bce" if target.kind == "binary" else None,
        )
    elif loss.expects == "log_probabilities" and produced != "log_probabilities":
        diags.warning(
            where,
            f"loss {loss.name!r} expects log-probabilities, but the output "
            f"{node!r} is not a log_softmax",
            "end with log_softmax, or use cross_entropy",
        )
    return loss


def _try_loss(
    spec: S.Spec,
    target: S.Target,
    output: torch.Tensor,
    diags: Diagnostics,
    allow_imports: Sequence[str],
) -> None:
    """Build the loss and run it on stand-in tensors: torch's own checks of its arguments and
    inputs (an unknown reduction, a weight of the wrong size) become diagnostics."""
    # Two real rows (at most 8 MB), since some checks only run on real data and any meta
    # op costs torch's compiler import; else meta.
    device = "cpu" if math.prod(output.shape[1:]) <= 2**20 else "meta"
    rows = 2 if device == "cpu" else output.shape[0]
    sample = torch.zeros(rows, *output.shape[1:], device=device)
    axis = None
    if target.kind == "class":
        axis, _, _ = class_axis(spec.loss, target, output.shape)
        positions = target.shape if axis is not None else ()
        wanted = torch.zeros(rows, *positions, dtype=torch.long, device=device)
    else:
        wanted = torch.zeros(rows, *target.shape, device=device)
    parts = spec.loss.terms if spec.loss.kind == "sum" else (spec.loss,)
    paths = (
        [("loss", "terms", i) for i in range(len(parts))]
        if spec.loss.kind == "sum"
        else [("loss",)]
    )
    classes = output.shape[1 if axis is None else axis] if target.kind == "class" else None
    width = output.shape[-1] if output.dim() > 1 else 1
    sized = [
        check_weight_sizes(p.kind, p.args, path, classes, width, diags)
        for p, path in zip(parts, paths, strict=True)
    ]
    if not all(sized):
        return
    try:
        with torch.device(device):
            build_loss(spec.loss, allow_imports, axis)(sample, wanted)
    except Exception as exc:  # torch's checks: said at the term that fails, with its reason
        if spec.loss.kind == "sum":
            with torch.device(device):
                wrap = (lambda m: m) if axis is None else (lambda m: PerPosition(m, axis))
                batch = output.shape[0]
                if not run_each_term(spec.loss, sample, wanted, wrap, diags, allow_imports, batch):
                    return
        path, args = ("loss",), spec.loss.args
        report_refusal(path, spec.loss.kind, args, sample, wanted, exc, diags, output.shape[0])


def _layer_index(graph: Graph, name: str) -> int:
    node = next(n for n in graph.nodes if n.name == name)
    return node.path[-1]  # type: ignore[return-value]


def _check_output_shape(
    spec: S.Loss,
    loss: LossDef,
    target: S.Target,
    output: torch.Tensor,
    where: SpecPath,
    diags: Diagnostics,
) -> bool:
    """False (with an error) when the output's shape cannot fit the targets."""
    per_sample = tuple(output.shape[1:])
    if target.kind == "class":
        axis, message, hint = class_axis(spec, target, output.shape)
        if message is not None:
            at_class_dim = spec.class_dim is not None and "class_dim must" in message
            diags.error(("loss", "class_dim") if at_class_dim else where, message, hint)
            return False
        if axis is not None:
            return True
        classes = target.num_classes
        if len(per_sample) != 1 or (classes is not None and per_sample[0] != classes):
            want = f"[B, {classes}]" if classes else "[B, num_classes]"
            diags.error(
                where,
                f"loss {loss.name!r} over {classes or 'N'} classes "
                f"needs an output of shape {want}, got {shape_text(output.shape)}",
            )
            return False
    elif per_sample != tuple(target.shape) and per_sample != ():
        diags.error(
            where,
            f"loss {loss.name!r} on {target.kind} targets of shape "
            f"{shape_text((output.shape[0], *target.shape))} needs an output of that shape,"
            f" got {shape_text(output.shape)}",
        )
        return False
    return True
