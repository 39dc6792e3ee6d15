"""Metrics as pure accumulators: `init() -> state`, `update(state, prob, target) -> state`,
`compute(state) -> float`. States are tuples of sums, so an epoch's value is exact (not a
mean of batch means) and nothing is synchronized with the host until `compute`.

`prob` is the model output mapped to probabilities for classification (sigmoid/softmax of
logits) and the raw output for regression. Class targets with positions (tokens, pixels)
arrive as class-last `prob` [B, ..., C] and targets [B, ...]: `make_metric` turns every
labelled position into a row (skipping the loss's `ignore_index`), except for metrics over
whole rows (`exact_match`), which get the rows and the ignored value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import torch

from tdsl.errors import describe_value

State = tuple[torch.Tensor, ...]
# A metric's arguments that cannot work: (argument, message, hint).
ArgProblem = tuple[str, str, str | None]


def _merge_sums(a: State, b: State) -> State:
    return tuple(x + y for x, y in zip(a, b, strict=True))


def _merge_cat(a: State, b: State) -> State:
    return tuple(torch.cat([x, y]) for x, y in zip(a, b, strict=True))


@attrs.frozen
class Metric:
    name: str
    init: Callable[[], State]
    update: Callable[[State, torch.Tensor, torch.Tensor], State]
    compute: Callable[[State], float]
    # Combines the states of two disjoint sets of rows.
    merge: Callable[[State, State], State] = _merge_sums
    # The state of a set of rows on its own (None: `update` from `init()`), which saves
    # creating and adding zeros once per flush of an epoch's outputs.
    measure: Callable[[torch.Tensor, torch.Tensor], State] | None = None

    def first(self, prob: torch.Tensor, target: torch.Tensor) -> State:
        """The state of these rows alone: `update(init(), prob, target)`, in fewer ops."""
        if self.measure is None:
            return self.update(self.init(), prob, target)
        return self.measure(prob, target)


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


def _zeros(n: int) -> Callable[[], State]:
    return lambda: tuple(torch.zeros((), dtype=torch.float64) for _ in range(n))


def _add(state: State, *values: torch.Tensor) -> State:
    return tuple(s + v.to(s.device, torch.float64) for s, v in zip(state, values, strict=True))


def _count(n: int) -> torch.Tensor:
    return torch.tensor(float(n), dtype=torch.float64)


def _summed(
    name: str,
    measure: Callable[[torch.Tensor, torch.Tensor], State],
    compute: Callable[[State], float] | None = None,
) -> Metric:
    """A metric whose state is (sum over rows, row count), from `measure`'s float64 pair."""

    def update(state: State, prob: torch.Tensor, target: torch.Tensor) -> State:
        return _add(state, *measure(prob, target))

    compute = compute or (lambda s: float(s[0] / s[1]))
    return Metric(name, _zeros(2), update, compute, measure=measure)


def _hard_labels(prob: torch.Tensor, target: torch.Tensor, kind: str, threshold: float):
    if kind == "binary":
        return (prob > threshold).to(target.dtype).reshape(target.shape), target
    return prob.argmax(dim=-1), target.reshape(-1) if target.dim() > 1 else target


def _accuracy(kind: str, threshold: float = 0.5) -> Metric:
    def measure(prob: torch.Tensor, target: torch.Tensor) -> State:
        predicted, truth = _hard_labels(prob, target, kind, threshold)
        correct = (predicted.reshape(-1) == truth.reshape(-1)).sum(dtype=torch.float64)
        return correct, _count(truth.numel())

    return _summed("accuracy", measure)


def _top_k(kind: str, k: int = 5) -> Metric:
    def measure(prob: torch.Tensor, target: torch.Tensor) -> State:
        top = prob.topk(min(k, prob.shape[-1]), dim=-1).indices
        hits = (top == target.reshape(-1, 1)).any(dim=-1).sum(dtype=torch.float64)
        return hits, _count(target.numel())

    return _summed("top_k_accuracy", measure)


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


def _confusion(which: str) -> Callable[..., Metric]:
    """Binary precision/recall/F1; for class targets the macro average over classes. IoU
    and Dice (segmentation): averaged over the classes that occur in the targets or the
    predictions."""

    def make(kind: str, threshold: float = 0.5, num_classes: int = 2) -> Metric:
        classes = 1 if kind == "binary" else num_classes

        def init() -> State:
            return tuple(torch.zeros(classes, dtype=torch.float64) for _ in range(3))

        def update(state: State, prob: torch.Tensor, target: torch.Tensor) -> State:
            predicted, truth = _hard_labels(prob, target, kind, threshold)
            predicted, truth = predicted.reshape(-1).long(), truth.reshape(-1).long()
            if kind == "binary":
                tp = ((predicted == 1) & (truth == 1)).sum().reshape(1)
                fp = ((predicted == 1) & (truth == 0)).sum().reshape(1)
                fn = ((predicted == 0) & (truth == 1)).sum().reshape(1)
            else:
                tp = torch.bincount(truth[predicted == truth], minlength=classes)
                fp = torch.bincount(predicted[predicted != truth], minlength=classes)
                fn = torch.bincount(truth[predicted != truth], minlength=classes)
            return _add(state, tp, fp, fn)

        def compute(state: State) -> float:
            tp, fp, fn = state
            if which in ("mean_iou", "dice"):  # over the classes present or predicted
                union = tp + fp + fn
                seen = union > 0
                if which == "mean_iou":
                    return float((tp[seen] / union[seen]).mean())
                return float((2 * tp[seen] / (union + tp)[seen]).mean())
            precision = tp / (tp + fp).clamp(min=1)
            recall = tp / (tp + fn).clamp(min=1)
            f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
            return float({"precision": precision, "recall": recall, "f1": f1}[which].mean())

        return Metric(which, init, update, compute)

    return make


def _auroc(kind: str) -> Metric:
    """Exact ROC-AUC over the epoch (Mann-Whitney U with tied ranks averaged)."""

    def init() -> State:
        return (torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64))

    def update(state: State, prob: torch.Tensor, target: torch.Tensor) -> State:
        scores = prob.detach().reshape(-1).to(torch.float64)
        return (
            torch.cat([state[0], scores.cpu()]),
            torch.cat([state[1], target.reshape(-1).cpu().double()]),
        )

    def compute(state: State) -> float:
        scores, labels = state
        positives = labels.sum()
        negatives = labels.numel() - positives
        if positives == 0 or negatives == 0:
            return float("nan")
        order = scores.argsort()
        sorted_scores = scores[order]
        ranks = torch.empty_like(scores)
        ranks[order] = torch.arange(1, scores.numel() + 1, dtype=torch.float64)
        unique, inverse = torch.unique(sorted_scores, return_inverse=True)
        mean_rank = torch.zeros_like(unique).index_add_(0, inverse, ranks[order])
        mean_rank /= torch.bincount(inverse, minlength=unique.numel())
        ranks[order] = mean_rank[inverse]
        return float(
            (ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives)
        )

    return Metric("auroc", init, update, compute, _merge_cat)


def _error(
    name: str,
    per_item: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    finish: Callable[[float], float] = lambda x: x,
) -> Callable[..., Metric]:
    def make(kind: str) -> Metric:
        def measure(out: torch.Tensor, target: torch.Tensor) -> State:
            errors = per_item(out.reshape(target.shape).double(), target.double())
            return errors.sum(), _count(errors.numel())

        return _summed(name, measure, lambda s: finish(float(s[0] / s[1])))

    return make


def _perplexity(kind: str) -> Metric:
    """exp(mean cross-entropy of the target tokens), exact over the epoch: sums of -log p."""

    tiny = torch.finfo(torch.float32).tiny  # a probability that underflowed: -log p ~ 87

    def measure(prob: torch.Tensor, target: torch.Tensor) -> State:
        picked = prob.gather(-1, target.reshape(-1, 1).long()).double().clamp(min=tiny)
        return -picked.log().sum(), _count(target.numel())

    def compute(state: State) -> float:
        return math.exp(float(state[0] / state[1])) if state[1] > 0 else float("nan")

    return _summed("perplexity", measure, compute)


def _exact_match(kind: str, ignore_index: int | None = None) -> Metric:
    """The share of rows whose every labelled position is predicted right (argmax). With a
    causal model and teacher forcing this is greedy decoding's exact match: each answer
    token is the argmax given the right tokens before it."""

    def measure(prob: torch.Tensor, target: torch.Tensor) -> State:
        rows = target.shape[0]
        if prob.dim() == target.dim():  # binary: one probability per target
            predicted = (prob > 0.5).to(target.dtype).reshape(target.shape)
        else:
            predicted = prob.argmax(dim=-1).reshape(target.shape)
        labelled = torch.ones_like(target, dtype=torch.bool)
        if ignore_index is not None:
            labelled = target != ignore_index
        right = ((predicted == target) | ~labelled).reshape(rows, -1).all(dim=1)
        counted = labelled.reshape(rows, -1).any(dim=1)
        return (right & counted).sum(dtype=torch.float64), counted.sum(dtype=torch.float64)

    return _summed("exact_match", measure)


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


_register("accuracy", _CLASSIFICATION, True, _accuracy, {"threshold": False})
_register("top_k_accuracy", frozenset({"class"}), True, _top_k, {"k": False}, _check_top_k)
for _which in ("precision", "recall", "f1"):
    _register(_which, _CLASSIFICATION, True, _confusion(_which), {"threshold": False})
for _which in ("mean_iou", "dice"):
    _register(_which, frozenset({"class"}), True, _confusion(_which))
_register("auroc", frozenset({"binary"}), True, _auroc)
_register("perplexity", frozenset({"class"}), False, _perplexity)
_register("exact_match", _CLASSIFICATION, True, _exact_match, rows=True)
_register("mse", _NUMERIC, False, _error("mse", lambda o, t: (o - t) ** 2))
_register("rmse", _NUMERIC, False, _error("rmse", lambda o, t: (o - t) ** 2, lambda x: x**0.5))
_register("mae", _NUMERIC, False, _error("mae", lambda o, t: (o - t).abs()))
# Percentage errors divide by the target: rows with a zero target are undefined, as usual.
_register(
    "mape", frozenset({"regression"}), False, _error("mape", lambda o, t: ((o - t) / t).abs() * 100)
)
_register(
    "mspe", frozenset({"regression"}), False, _error("mspe", lambda o, t: ((o - t) / t) ** 2 * 100)
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
