"""Several outputs, several targets: a `kind: outputs` loss and metrics with `output:`.

Each term is checked as a one-output loss is (its target kind, the output's shape, a sigmoid
before bce), with every problem located at the term; names of outputs and targets that do
not exist get a did-you-mean.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from tdsl import spec as S
from tdsl.check.loss_arguments import check_weight_sizes
from tdsl.data import data_signature
from tdsl.errors import Diagnostics, SpecPath, check_keywords
from tdsl.model.graph import Graph
from tdsl.registry.losses import LossDef, PerOutput, lookup_loss, loss_names
from tdsl.registry.ops import shape_text
from tdsl.wording import did_you_mean

_LAST_OPS = {"sigmoid": "probabilities", "softmax": "probabilities"}
_LAST_OPS |= {"log_softmax": "log_probabilities", "logsoftmax": "log_probabilities"}


def resolve_outputs_loss(
    spec: S.Loss, diags: Diagnostics, lookup: Callable[..., LossDef | None]
) -> LossDef | None:
    """A `kind: outputs` loss's own keys and each term's loss; None if any is unknown."""
    check_keywords(spec.args, {}, "loss 'outputs'", ("loss",), diags)
    if spec.class_dim is not None:
        diags.error(("loss", "class_dim"), "class_dim applies to a one-output loss")
    if not spec.terms:
        diags.error(
            ("loss",),
            "a kind: outputs loss needs terms",
            "terms: [{output: NAME, kind: mse, weight: 1.0}, ...]",
        )
        return None
    ok = True
    for index, term in enumerate(spec.terms):
        path = ("loss", "terms", index)
        if term.output is None:
            diags.error(path, "a kind: outputs term names its output", "output: NAME")
            ok = False
        found = lookup(term.kind, path)
        if found is None:
            ok = False
        else:
            check_keywords(term.args, found.arguments, f"loss {term.kind!r}", path, diags)
    kinds = frozenset({"binary", "class", "regression"})
    return LossDef("outputs", PerOutput, "values", kinds, {}) if ok else None


def named_outputs(graph: Graph | None, output: Any) -> dict[str, Any] | None:
    """The model's outputs by name (values where known), or None without a graph."""
    if graph is None:
        return None
    values = (output,) if not isinstance(output, tuple) else output
    if output is None or len(values) != len(graph.outputs):
        values = (None,) * len(graph.outputs)
    return dict(zip(graph.outputs, values, strict=True))


def check_outputs_loss(
    spec: S.Spec,
    graph: Graph | None,
    output: Any,
    diags: Diagnostics,
    allow_imports: Sequence[str] = (),
) -> None:
    """Each term against its model output and its target."""
    targets = data_signature(spec, allow_imports).targets
    if targets is None:
        diags.error(
            ("loss", "kind"),
            "a kind: outputs loss reads named targets, but the data yields one target",
            "name them in data.targets: {NAME: {column: COLUMN, kind: binary}, ...}",
        )
        return
    outputs = named_outputs(graph, output)
    for index, term in enumerate(spec.loss.terms):
        path = ("loss", "terms", index)
        if outputs is not None and term.output not in outputs:
            diags.error(
                (*path, "output"),
                f"the model has no output {term.output!r}",
                did_you_mean(term.output, list(outputs), listing_limit=20),
            )
            continue
        target_name = term.target_name
        if target_name not in targets:
            diags.error(
                (*path, "target" if term.target is not None else "output"),
                f"the data has no target {target_name!r}",
                did_you_mean(target_name, list(targets), listing_limit=20)
                or f"targets: {', '.join(targets)}; or name one with target:",
            )
            continue
        found = lookup_loss(term.kind, allow_imports)
        target = targets[target_name]
        if target.kind not in found.targets:
            fitting = [n for n in loss_names() if _fits(n, target.kind)]
            diags.error(
                (*path, "kind"),
                f"loss {term.kind!r} needs {' or '.join(sorted(found.targets))} targets, but "
                f"the target {target_name!r} is {target.kind}",
                "losses for these targets: " + ", ".join(fitting),
            )
            continue
        value = None if outputs is None else outputs[term.output]
        if isinstance(value, torch.Tensor):
            _check_term_output(graph, term, found, target, value, path, diags)


def _fits(name: str, kind: str) -> bool:
    found = lookup_loss(name) if name not in ("sum", "outputs") else None
    return found is not None and kind in found.targets


def _check_term_output(
    graph: Graph,
    term: S.LossTerm,
    loss: LossDef,
    target: S.Target,
    output: torch.Tensor,
    path: SpecPath,
    diags: Diagnostics,
) -> None:
    """The output's shape against its target's, and what its last op produces against what
    the loss expects."""
    per_sample = tuple(output.shape[1:])
    where = (*path, "output")
    if target.kind == "class":
        classes = target.num_classes
        if len(per_sample) != 1 or (classes is not None and per_sample[0] != classes):
            diags.error(
                where,
                f"loss {term.kind!r} over {classes or 'N'} classes needs the output "
                f"{term.output!r} of shape [B, {classes or 'num_classes'}], "
                f"got {shape_text(output.shape)}",
            )
            return
    elif per_sample not in (tuple(target.shape), ()):
        diags.error(
            where,
            f"loss {term.kind!r} on the {target.kind} target {term.target_name!r} of shape "
            f"{shape_text((output.shape[0], *target.shape))} needs the output "
            f"{term.output!r} of that shape, got {shape_text(output.shape)}",
        )
        return
    classes = per_sample[0] if target.kind == "class" else None
    width = output.shape[-1] if output.dim() > 1 else 1
    check_weight_sizes(term.kind, term.args, path, classes, width, diags)
    node = next((n for n in graph.nodes if n.name == term.output), None)
    produced = "values" if node is None else _LAST_OPS.get(node.op.lower(), "logits")
    if loss.expects == "probabilities" and produced != "probabilities":
        diags.error(
            where,
            f"loss {term.kind!r} expects probabilities, but the output {term.output!r} "
            "is not a sigmoid or softmax",
            "end that head with sigmoid, or use bce_with_logits",
        )
    elif loss.expects == "logits" and produced == "probabilities":
        diags.warning(
            where,
            f"loss {term.kind!r} applies its own sigmoid/softmax, but the output "
            f"{term.output!r} is already one (double sigmoid)",
        )


def check_output_metric(
    spec: S.Spec,
    index: int,
    metric: S.Metric,
    graph: Graph | None,
    diags: Diagnostics,
) -> S.Target | None:
    """The target a metric with `output:` compares with (None, with an error, if none)."""
    path = ("metrics", index)
    if spec.loss.kind != "outputs":
        if metric.output is not None:
            diags.error((*path, "output"), "output applies to metrics of a kind: outputs loss")
        return None
    if metric.output is None:
        names = ", ".join(graph.outputs) if graph is not None else "one of model.outputs"
        diags.error(path, "with several outputs a metric names its output", f"output: {names}")
        return None
    if graph is not None and metric.output not in graph.outputs:
        diags.error(
            (*path, "output"),
            f"the model has no output {metric.output!r}",
            did_you_mean(metric.output, list(graph.outputs), listing_limit=20),
        )
        return None
    targets = data_signature(spec).targets or {}
    wanted = metric_target(spec.loss, metric.output)
    return targets.get(wanted)


def metric_target(loss: S.Loss, output: str) -> str:
    """The target an output's metrics compare with: its first loss term's."""
    return next((t.target_name for t in loss.terms if t.output == output), output)


def check_term_keys(loss: S.Loss, diags: Diagnostics) -> None:
    """`output:` and `target:` belong to kind: outputs terms only."""
    if loss.kind == "outputs":
        return
    for index, term in enumerate(loss.terms):
        for key in ("output", "target"):
            if getattr(term, key) is not None:
                diags.error(
                    ("loss", "terms", index, key),
                    f"{key} applies to the terms of a kind: outputs loss",
                    "use kind: outputs for a loss per output",
                )


def check_outputs_training(spec: S.Spec, diags: Diagnostics) -> None:
    """What a loss per output cannot be combined with (yet)."""
    if spec.loss.kind != "outputs":
        return
    if spec.train.compile:
        diags.error(
            ("train", "compile"),
            "a compiled step does not support a kind: outputs loss; set train.compile: false",
        )
    if spec.train.accumulate > 1:
        diags.error(
            ("train", "accumulate"),
            "train.accumulate does not support a kind: outputs loss (yet); set it to 1",
        )
