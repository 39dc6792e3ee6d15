"""Several outputs and several targets: a `kind: outputs` loss, whose terms each read one of
the model's named outputs and one of the data's named targets, and metrics per output.

The data's targets arrive as one [B, K] tensor, a column per named target (see
`tdsl.data.table`), so batching is the same as for one target; `targets` splits it here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import torch

from tdsl import spec as S
from tdsl.check.outputs_and_targets import data_signature
from tdsl.check.per_output import metric_target
from tdsl.model.graph import Graph
from tdsl.registry.losses import PerOutput, lookup_loss
from tdsl.registry.metrics import Metric, lookup_metric, make_metric


@attrs.frozen
class MultiOutput:
    """How a step reads several outputs and targets."""

    outputs: tuple[str, ...]  # model.outputs, in the order the module returns them
    targets: tuple[tuple[str, str], ...]  # (name, kind) per column of the target tensor
    loss: PerOutput
    # Per metric: the output it measures and the target it compares with; and per output,
    # its values -> probabilities.
    metric_outputs: tuple[tuple[str, str], ...]
    to_prob: Mapping[str, Callable[[torch.Tensor], torch.Tensor]]

    def split_targets(self, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The [B, K] target tensor as each named target: class ids [B], others [B, 1]."""
        return {
            name: target[:, i].long() if kind == "class" else target[:, i : i + 1].float()
            for i, (name, kind) in enumerate(self.targets)
        }

    def named(self, output: Any) -> dict[str, torch.Tensor]:
        items = (output,) if isinstance(output, torch.Tensor) else tuple(output)
        return dict(zip(self.outputs, items, strict=True))

    def losses(self, output: Any, target: Mapping[str, torch.Tensor]):
        """(weighted total, each term's value by its history name)."""
        terms = self.loss.terms(self.named(output), target)
        return self.loss.total(terms), terms

    def measure(self, metrics: Sequence[Any], output: Any, target: Any) -> dict[str, Any]:
        named = self.named(output)
        targets = target if isinstance(target, Mapping) else self.split_targets(target)
        states = {}
        for metric, (name, wanted) in zip(metrics, self.metric_outputs, strict=True):
            prob = self.to_prob[name](named[name].detach().float())
            states[metric.name] = metric.first(prob, targets[wanted])
        return states


def rows(target: Any) -> int:
    """The rows of a batch's target: one tensor, or a dict of them."""
    if isinstance(target, torch.Tensor):
        return int(target.shape[0])
    return int(next(iter(target.values())).shape[0])


def detached(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach()
    return tuple(v.detach() for v in value)


def numel(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel()
    if isinstance(value, Mapping):
        return sum(v.numel() for v in value.values())
    return sum(v.numel() for v in value)


def join(items: Sequence[Any]) -> Any:
    """Batches' outputs or targets end to end: tensors, tuples of them or dicts of them."""
    first = items[0]
    if len(items) == 1:
        return first
    if isinstance(first, torch.Tensor):
        return torch.cat(items)
    if isinstance(first, Mapping):
        return {key: torch.cat([item[key] for item in items]) for key in first}
    return tuple(torch.cat(parts) for parts in zip(*items, strict=True))


def to_probabilities(expects: str, target_kind: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if expects == "logits":
        return torch.sigmoid if target_kind == "binary" else lambda x: torch.softmax(x, dim=-1)
    if expects == "log_probabilities":
        return torch.exp
    return lambda x: x


def per_output(
    spec: S.Spec, graph: Graph, loss: Any, allow_imports: Sequence[str]
) -> tuple[MultiOutput, tuple[Metric, ...]]:
    """How steps read several outputs and targets, and the metrics named per output."""
    targets = data_signature(spec, allow_imports).targets
    to_prob = {}
    for term in spec.loss.terms:
        kind = targets[term.target_name].kind
        expects = lookup_loss(term.kind, allow_imports).expects
        to_prob.setdefault(term.output, to_probabilities(expects, kind))
    metrics, metric_outputs = [], []
    for m in spec.metrics:
        wanted = metric_target(spec.loss, m.output)
        target = targets[wanted]
        made = make_metric(lookup_metric(m.kind), target.kind, m.args, target.num_classes)
        metrics.append(attrs.evolve(made, name=m.name))
        metric_outputs.append((m.output, wanted))
    multi = MultiOutput(
        outputs=tuple(graph.outputs),
        targets=tuple((name, t.kind) for name, t in targets.items()),
        loss=loss,
        metric_outputs=tuple(metric_outputs),
        to_prob=to_prob,
    )
    return multi, tuple(metrics)
