"""The metric registry: each metric's name, the target kinds it fits, its arguments and
their checks, and `make_metric`, which fits a metric to a target's shape.

Class targets with positions (tokens, pixels) arrive as class-last `prob` [B, ..., C] and
targets [B, ...]: `make_metric` turns every labelled position into a row (skipping the
loss's `ignore_index`), except for metrics over whole rows (`exact_match`), which get the
rows and the ignored value. The formulas are in `tdsl.registry.metric_accumulators`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
import torch

from tdsl.registry.metric_accumulators import (
    Metric,
    State,
    accuracy,
    auroc,
    confusion,
    error,
    exact_match,
    perplexity,
    top_k,
)
from tdsl.wording import describe_value

# A metric's arguments that cannot work: (argument, message, hint).
ArgProblem = tuple[str, str, str | None]


@attrs.frozen
class MetricDef:
    name: str
    targets: frozenset[str]
    higher_is_better: bool
    make: Callable[..., Metric]  # (target_kind, **args) -> Metric
    arguments: Mapping[str, bool] = attrs.field(factory=dict)
    # (args, number of classes or None) -> what is wrong with the arguments
    check: Callable[[Mapping[str, Any], int | None], list[ArgProblem]] | None = None
    # Sees whole rows and the ignored target value, not each position as a row.
    rows: bool = False


def _check_top_k(args: Mapping[str, Any], num_classes: int | None) -> list[ArgProblem]:
    k = args.get("k", 5)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        return [("k", f"k must be a positive integer, got {describe_value(k)}", None)]
    if num_classes is None or k < num_classes:
        return []
    # Every class is among the top k, so every row is a hit: 1.0 whatever the model does.
    written = f"k={k}" if "k" in args else f"the default k={k}"
    message = (
        f"top_k_accuracy with {written} over {num_classes} classes is always 1.0: "
        f"k must be less than the number of classes ({num_classes})"
    )
    if num_classes <= 2:
        return [("k", message, "use accuracy")]
    return [("k", message, f"use k: {num_classes - 1} or less, or accuracy for k: 1")]


def _positions_as_rows(metric: Metric, ignore_index: int | None) -> Metric:
    """`metric` over class-last probabilities [B, ..., C] and targets [B, ...]: each
    position a row, positions whose target is `ignore_index` left out."""

    def labelled(prob: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        prob, target = prob.reshape(-1, prob.shape[-1]), target.reshape(-1)
        if ignore_index is not None:
            keep = target != ignore_index
            prob, target = prob[keep], target[keep]
        return prob, target

    def update(state: State, prob: torch.Tensor, target: torch.Tensor) -> State:
        return metric.update(state, *labelled(prob, target))

    inner = metric.measure
    measure = None if inner is None else (lambda prob, target: inner(*labelled(prob, target)))
    return attrs.evolve(metric, update=update, measure=measure)


_CLASSIFICATION = frozenset({"binary", "class"})
_NUMERIC = frozenset({"binary", "regression"})
_METRICS: dict[str, MetricDef] = {}


def _register(
    name: str,
    targets: frozenset[str],
    higher: bool,
    make: Callable[..., Metric],
    arguments: Mapping[str, bool] | None = None,
    check: Callable[[Mapping[str, Any], int | None], list[ArgProblem]] | None = None,
    rows: bool = False,
) -> None:
    _METRICS[name] = MetricDef(name, targets, higher, make, dict(arguments or {}), check, rows)


_register("accuracy", _CLASSIFICATION, True, accuracy, {"threshold": False})
_register("top_k_accuracy", frozenset({"class"}), True, top_k, {"k": False}, _check_top_k)
for _which in ("precision", "recall", "f1"):
    _register(_which, _CLASSIFICATION, True, confusion(_which), {"threshold": False})
for _which in ("mean_iou", "dice"):
    _register(_which, frozenset({"class"}), True, confusion(_which))
_register("auroc", frozenset({"binary"}), True, auroc)
_register("perplexity", frozenset({"class"}), False, perplexity)
_register("exact_match", _CLASSIFICATION, True, exact_match, rows=True)
_register("mse", _NUMERIC, False, error("mse", lambda o, t: (o - t) ** 2))
_register("rmse", _NUMERIC, False, error("rmse", lambda o, t: (o - t) ** 2, lambda x: x**0.5))
_register("mae", _NUMERIC, False, error("mae", lambda o, t: (o - t).abs()))
# Percentage errors divide by the target: rows with a zero target are undefined, as usual.
_register(
    "mape", frozenset({"regression"}), False, error("mape", lambda o, t: ((o - t) / t).abs() * 100)
)
_register(
    "mspe", frozenset({"regression"}), False, error("mspe", lambda o, t: ((o - t) / t) ** 2 * 100)
)


def metric_names() -> list[str]:
    return sorted(_METRICS)


def lookup_metric(name: str) -> MetricDef | None:
    return _METRICS.get(name)


_PER_CLASS = ("precision", "recall", "f1", "mean_iou", "dice")


def make_metric(
    definition: MetricDef,
    target_kind: str,
    args: Mapping[str, Any],
    num_classes: int | None = None,
    ignore_index: int | None = None,
) -> Metric:
    """The metric for `target_kind` targets; for class targets, targets equal to
    `ignore_index` (the loss's) are left out."""
    extra: dict[str, Any] = (
        {"num_classes": num_classes}
        if definition.name in _PER_CLASS and target_kind == "class"
        else {}
    )
    if definition.rows:
        return definition.make(target_kind, **args, **extra, ignore_index=ignore_index)
    metric = definition.make(target_kind, **args, **extra)
    if target_kind != "class":
        return metric
    return _positions_as_rows(metric, ignore_index)
