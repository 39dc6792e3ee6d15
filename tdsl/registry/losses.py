"""Loss registry: each loss's builder beside what it expects of outputs and targets.

`expects` says what the model's last layer must produce ("logits", "probabilities",
"log_probabilities" or "values"); `targets` which target kinds fit. Validation uses both
to catch a bce without a sigmoid, a cross-entropy with the wrong width, and so on.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from tdsl.registry.ops import signature_arguments
from tdsl.registry.user_code import ImportRefused, import_object, is_import_path


class FocalLoss(nn.Module):
    """Binary focal loss on probabilities (a sigmoid output), as in the seeds:
    mean(alpha_t * (1 - p_t)^gamma * bce)."""

    def __init__(self, gamma: float = 2.0, alpha: float = 0.75):
        super().__init__()
        self.gamma, self.alpha = gamma, alpha

    def forward(self, prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy(prob, target, reduction="none")
        p_t = target * prob + (1 - target) * (1 - prob)
        alpha_t = target * self.alpha + (1 - target) * (1 - self.alpha)
        return torch.mean(alpha_t * torch.pow(1.0 - p_t, self.gamma) * bce)


class CosineLoss(nn.Module):
    """1 - cosine similarity between output and target vectors, averaged over the batch."""

    def __init__(self, dim: int = -1, eps: float = 1e-8):
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (1 - F.cosine_similarity(output, target, dim=self.dim, eps=self.eps)).mean()


@attrs.frozen
class LossDef:
    name: str
    cls: type[nn.Module]
    expects: str  # logits | probabilities | log_probabilities | values
    targets: frozenset[str]  # binary | class | regression
    arguments: Mapping[str, bool] = attrs.field(default=None)

    def build(self, args: Mapping[str, Any]) -> nn.Module:
        # Class weights arrive from YAML as lists; torch wants tensors.
        kwargs = {
            k: torch.tensor(v, dtype=torch.float32) if k in _TENSOR_ARGS else v
            for k, v in args.items()
        }
        return self.cls(**kwargs)


_TENSOR_ARGS = {"weight", "pos_weight"}
_BINARY, _CLASS, _REGRESSION = (
    frozenset({"binary"}),
    frozenset({"class"}),
    frozenset({"regression"}),
)
_NUMERIC = frozenset({"binary", "regression"})

_LOSSES: dict[str, LossDef] = {}


def _register(name: str, cls: type[nn.Module], expects: str, targets: frozenset[str]) -> None:
    if name in _LOSSES:
        raise ValueError(f"loss {name!r} is already registered")
    arguments = {
        k: v for k, v in signature_arguments(cls).items() if k not in ("size_average", "reduce")
    }  # deprecated torch arguments
    _LOSSES[name] = LossDef(name, cls, expects, targets, arguments)


_register("mse", nn.MSELoss, "values", _NUMERIC)
_register("l1", nn.L1Loss, "values", _NUMERIC)
_register("smooth_l1", nn.SmoothL1Loss, "values", _NUMERIC)
_register("huber", nn.HuberLoss, "values", _NUMERIC)
_register("bce", nn.BCELoss, "probabilities", _BINARY)
_register("bce_with_logits", nn.BCEWithLogitsLoss, "logits", _BINARY)
_register("focal", FocalLoss, "probabilities", _BINARY)
_register("cross_entropy", nn.CrossEntropyLoss, "logits", _CLASS)
_register("nll", nn.NLLLoss, "log_probabilities", _CLASS)
_register("cosine", CosineLoss, "values", _REGRESSION)


class WeightedSum(nn.Module):
    """sum(weight_i * loss_i(output, target)) — a `kind: sum` loss."""

    def __init__(self, weights: list[float], losses: list[nn.Module]):
        super().__init__()
        self.weights = list(weights)
        self.losses = nn.ModuleList(losses)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = self.weights[0] * self.losses[0](output, target)
        for weight, loss in zip(self.weights[1:], self.losses[1:], strict=True):
            total = total + weight * loss(output, target)
        return total


class PerPosition(nn.Module):
    """A classification loss over outputs with positions ([B, T, C], [B, C, H, W]) and
    targets of class ids per position ([B, T], [B, H, W]): every position becomes a row
    ([N, C] and [N]), so a mean is over positions (those not ignored) and any loss written
    for [B, C] outputs works unchanged."""

    def __init__(self, loss: nn.Module, class_dim: int):
        super().__init__()
        self.loss, self.class_dim = loss, class_dim

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        flat = output.movedim(self.class_dim, -1)
        return self.loss(flat.reshape(-1, flat.shape[-1]), target.reshape(-1))


class PerOutput(nn.Module):
    """A `kind: outputs` loss: each term on its own output and target. `terms` gives each
    term's value (the history's `loss_<output>`); calling it, their weighted sum."""

    def __init__(self, names, outputs, targets, weights, losses):
        super().__init__()
        self.names, self.outputs, self.targets = list(names), list(outputs), list(targets)
        self.weights, self.losses = list(weights), nn.ModuleList(losses)

    def terms(self, output: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]):
        return {
            name: loss(output[o].float(), target[t])
            for name, o, t, loss in zip(
                self.names, self.outputs, self.targets, self.losses, strict=True
            )
        }

    def total(self, terms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        values = [w * terms[n] for w, n in zip(self.weights, self.names, strict=True)]
        return sum(values[1:], values[0])

    def forward(self, output, target) -> torch.Tensor:
        return self.total(self.terms(output, target))


def term_names(spec: Any) -> list[str]:
    """The history's name of each term of a `kind: outputs` loss: loss_<output>, numbered
    when two terms read the same output."""
    names, seen = [], {}
    for term in spec.terms:
        seen[term.output] = seen.get(term.output, 0) + 1
        suffix = "" if seen[term.output] == 1 else f"_{seen[term.output]}"
        names.append(f"loss_{term.output}{suffix}")
    return names


def build_loss(
    spec: Any, allow_imports: Sequence[str] = (), class_dim: int | None = None
) -> nn.Module:
    """The loss module for a `tdsl.Loss` spec that has passed validation; with `class_dim`
    (1 or -1), over class targets with positions."""
    if spec.kind == "outputs":
        return PerOutput(
            term_names(spec),
            [t.output for t in spec.terms],
            [t.target_name for t in spec.terms],
            [t.weight for t in spec.terms],
            [lookup_loss(t.kind, allow_imports).build(t.args) for t in spec.terms],
        )
    if spec.kind == "sum":
        losses = [lookup_loss(t.kind, allow_imports).build(t.args) for t in spec.terms]
        loss: nn.Module = WeightedSum([t.weight for t in spec.terms], losses)
    else:
        loss = lookup_loss(spec.kind, allow_imports).build(spec.args)
    return loss if class_dim is None else PerPosition(loss, class_dim)


def ignored_target(spec: Any, allow_imports: Sequence[str] = ()) -> int | None:
    """The target value the loss skips (`ignore_index`: as written, else the loss class's
    default, -100 for cross_entropy and nll); None for losses without one. Metrics skip the
    same targets."""
    parts = spec.terms if spec.kind in ("sum", "outputs") else (spec,)
    for part in parts:
        found = lookup_loss(part.kind, allow_imports)
        if found is None or "ignore_index" not in (found.arguments or {}):
            continue
        if "ignore_index" in part.args:
            return part.args["ignore_index"]
        default = inspect.signature(found.cls).parameters["ignore_index"].default
        return default if isinstance(default, int) else None
    return None


def loss_names() -> list[str]:
    return sorted([*_LOSSES, "sum", "outputs"])


def lookup_loss(name: str, allow_imports: Sequence[str] = ()) -> LossDef | None:
    """A registered loss, or any torch.nn loss by class name (`nn.KLDivLoss`). `sum` and
    `outputs` are not losses by themselves: see `build_loss`."""
    if name in _LOSSES:
        return _LOSSES[name]
    if is_import_path(name):  # a user's loss class: imported only if allowed
        cls = import_object(name, allow_imports)
        if not (inspect.isclass(cls) and issubclass(cls, nn.Module)):
            raise ImportRefused(f"{name!r} is not a torch.nn.Module class")
        kinds = frozenset({"binary", "class", "regression"})
        return LossDef(name, cls, "values", kinds, signature_arguments(cls))
    class_name = name.removeprefix("torch.").removeprefix("nn.")
    cls = getattr(nn, class_name, None)
    if class_name != name and inspect.isclass(cls) and class_name.endswith("Loss"):
        arguments = signature_arguments(cls)
        return LossDef(name, cls, "values", frozenset({"binary", "class", "regression"}), arguments)
    return None


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
