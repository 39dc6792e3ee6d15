"""What a step minimizes and measures: the loss, the regularizers' penalties and the
metrics, built once by `compile` from the spec's `loss` and `metrics` sections."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import torch

from tdsl import spec as S
from tdsl.check.class_targets import class_axis
from tdsl.check.outputs_and_targets import data_signature, resolve_loss
from tdsl.errors import Diagnostics
from tdsl.model.build import GraphModule
from tdsl.model.graph import Graph, module_ops
from tdsl.model.selectors import select
from tdsl.registry.losses import build_loss, ignored_target
from tdsl.registry.metrics import Metric, lookup_metric, make_metric
from tdsl.train.multi_output import MultiOutput, per_output, to_probabilities


@attrs.frozen
class Objective:
    """What a step minimizes and measures."""

    loss_fn: torch.nn.Module
    to_prob: Callable[[torch.Tensor], torch.Tensor]  # output -> probabilities, for metrics
    # Penalties as functions of the parameters by name.
    regularizers: tuple[tuple[str, Callable[[Mapping[str, torch.Tensor]], torch.Tensor]], ...]
    metrics: tuple[Metric, ...]
    target_kind: str
    # Class targets with positions: the output axis of the classes (1 or -1); None: [B, C].
    class_dim: int | None = None
    # Several outputs and targets (a `kind: outputs` loss); None: one of each.
    multi: MultiOutput | None = None


def _regularizer(
    reg: S.Regularizer, names: list[str]
) -> Callable[[Mapping[str, torch.Tensor]], torch.Tensor]:
    """The penalty as a function of the parameters by name (the module's own, or the
    stand-ins a compiled step differentiates)."""

    # As in the seeds: L2 = weight * 0.5 * sum(p^2), L1 = weight * sum(|p|).
    def l1(params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return sum(params[n].abs().sum() for n in names)

    def l2(params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return 0.5 * sum(params[n].pow(2).sum() for n in names)

    if reg.kind == "l1":
        return lambda params: reg.weight * l1(params)
    if reg.kind == "l2":
        return lambda params: reg.weight * l2(params)
    return lambda params: reg.weight * (reg.l1_ratio * l1(params) + (1 - reg.l1_ratio) * l2(params))


def make_objective(
    spec: S.Spec,
    graph: Graph,
    module: GraphModule,
    device: torch.device,
    allow_imports: Sequence[str] = (),
    output: Any = None,
) -> Objective:
    """The loss, regularizers and metrics; `output` (the validated meta output) says where
    class targets with positions find their classes."""
    target = data_signature(spec, allow_imports).target
    class_dim = None
    if target.kind == "class" and isinstance(output, torch.Tensor):
        class_dim = class_axis(spec.loss, target, output.shape)[0]
    ignore_index = ignored_target(spec.loss, allow_imports)
    loss_def = resolve_loss(spec.loss, Diagnostics(), allow_imports)
    ops = module_ops(graph)
    regularizers = []
    counts: dict[str, int] = defaultdict(int)
    for reg in spec.loss.regularizers:
        counts[reg.kind] += 1
        name = reg.kind if counts[reg.kind] == 1 else f"{reg.kind}_{counts[reg.kind]}"
        regularizers.append((name, _regularizer(reg, select(reg, module, ops))))
    if spec.loss.kind == "outputs":
        loss_fn = build_loss(spec.loss, allow_imports).to(device)
        multi, metrics = per_output(spec, graph, loss_fn, allow_imports)
        return Objective(
            loss_fn,
            lambda x: x,
            tuple(regularizers),
            metrics,
            target.kind,
            multi=multi,
        )
    metrics = tuple(
        make_metric(lookup_metric(m.kind), target.kind, m.args, target.num_classes, ignore_index)
        for m in spec.metrics
    )
    return Objective(
        build_loss(spec.loss, allow_imports, class_dim).to(device),
        to_probabilities(loss_def.expects, target.kind),
        tuple(regularizers),
        metrics,
        target.kind,
        class_dim,
    )
