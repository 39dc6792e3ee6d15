"""Metrics as pure accumulators: `init() -> state`, `update(state, prob, target) -> state`,
`compute(state) -> float`. States are tuples of sums, so an epoch's value is exact (not a
mean of batch means) and nothing is synchronized with the host until `compute`.

`prob` is the model output mapped to probabilities for classification (sigmoid/softmax of
logits) and the raw output for regression. This module holds the `Metric` contract and
each built-in metric's state and formula; `tdsl.registry.metrics` names them, checks their
arguments and fits them to a target's shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import attrs
import torch

State = tuple[torch.Tensor, ...]


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


def accuracy(kind: str, threshold: float = 0.5) -> Metric:
    def measure(prob: torch.Tensor, target: torch.Tensor) -> State:
        predicted, truth = _hard_labels(prob, target, kind, threshold)
        correct = (predicted.reshape(-1) == truth.reshape(-1)).sum(dtype=torch.float64)
        return correct, _count(truth.numel())

    return _summed("accuracy", measure)


def top_k(kind: str, k: int = 5) -> Metric:
    def measure(prob: torch.Tensor, target: torch.Tensor) -> State:
        top = prob.topk(min(k, prob.shape[-1]), dim=-1).indices
        hits = (top == target.reshape(-1, 1)).any(dim=-1).sum(dtype=torch.float64)
        return hits, _count(target.numel())

    return _summed("top_k_accuracy", measure)


def confusion(which: str) -> Callable[..., Metric]:
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


def auroc(kind: str) -> Metric:
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


def error(
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


def perplexity(kind: str) -> Metric:
    """exp(mean cross-entropy of the target tokens), exact over the epoch: sums of -log p."""

    tiny = torch.finfo(torch.float32).tiny  # a probability that underflowed: -log p ~ 87

    def measure(prob: torch.Tensor, target: torch.Tensor) -> State:
        picked = prob.gather(-1, target.reshape(-1, 1).long()).double().clamp(min=tiny)
        return -picked.log().sum(), _count(target.numel())

    def compute(state: State) -> float:
        return math.exp(float(state[0] / state[1])) if state[1] > 0 else float("nan")

    return _summed("perplexity", measure, compute)


def exact_match(kind: str, ignore_index: int | None = None) -> Metric:
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
