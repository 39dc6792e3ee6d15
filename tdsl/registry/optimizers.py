"""Optimizers and learning-rate schedules by name.

Short names for the common ones; every other `torch.optim` optimizer or scheduler is
reachable by its lower-cased class name (`nadam`, `cycliclr`). Arguments are checked
against the class's own signature.
"""

from __future__ import annotations

import functools
import inspect
import math

import attrs
import torch

from tdsl.registry.ops import signature_arguments

FILLED_SCHEDULE_ARGS = frozenset({"T_max", "total_steps", "max_lr"})  # from epochs and lr


@attrs.frozen
class OptimDef:
    name: str
    cls: type
    arguments: dict[str, bool]


_OPTIMIZER_ALIASES = {
    "sgd": "SGD",
    "adam": "Adam",
    "adamw": "AdamW",
    "adagrad": "Adagrad",
    "rmsprop": "RMSprop",
}


class WarmupCosine(torch.optim.lr_scheduler.LRScheduler):
    """Linear warmup from start_factor * lr to lr over `warmup` steps (or epochs), then a
    cosine decay to `min_lr` at `T_max`. tdsl fills T_max from the run's length."""

    def __init__(
        self,
        optimizer,
        T_max: int,
        warmup: int = 0,
        min_lr: float = 0.0,  # noqa: N803
        start_factor: float = 0.0,
        last_epoch: int = -1,
    ):
        self.T_max, self.warmup, self.min_lr = T_max, warmup, min_lr
        self.start_factor = start_factor
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        t = self.last_epoch
        if t < self.warmup:
            factor = self.start_factor + (1 - self.start_factor) * t / self.warmup
            return [base * factor for base in self.base_lrs]
        span = max(1, self.T_max - self.warmup)
        progress = min(1.0, (t - self.warmup) / span)
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return [self.min_lr + (base - self.min_lr) * cosine for base in self.base_lrs]


_SCHEDULE_ALIASES = {
    "cosine_warmup": WarmupCosine,
    "step": "StepLR",
    "multi_step": "MultiStepLR",
    "exponential": "ExponentialLR",
    "cosine": "CosineAnnealingLR",
    "one_cycle": "OneCycleLR",
    "reduce_on_plateau": "ReduceLROnPlateau",
    "linear_warmup": "LinearLR",
}


@functools.cache  # torch's modules do not change; listing one takes milliseconds
def _classes(module: object, base: type) -> dict[str, type]:
    found = {}
    for attr in dir(module):
        cls = getattr(module, attr)
        if (
            inspect.isclass(cls)
            and issubclass(cls, base)
            and cls is not base
            and not attr.startswith("_")
        ):
            found[attr.lower()] = cls
    return found


def _lookup(name: str, module: object, base: type, aliases: dict[str, object], skip: set[str]):
    classes = _classes(module, base)
    alias = aliases.get(name)
    cls = (
        (getattr(module, alias) if isinstance(alias, str) else alias)
        if alias
        else classes.get(name)
    )
    if cls is None:
        return None
    arguments = {k: v for k, v in signature_arguments(cls).items() if k not in skip}
    return OptimDef(name, cls, arguments)


def lookup_optimizer(name: str) -> OptimDef | None:
    return _lookup(name, torch.optim, torch.optim.Optimizer, _OPTIMIZER_ALIASES, {"params"})


def optimizer_names() -> list[str]:
    return sorted(set(_OPTIMIZER_ALIASES) | set(_classes(torch.optim, torch.optim.Optimizer)))


_SCHEDULER_BASE = torch.optim.lr_scheduler.LRScheduler
# Schedulers that wrap other schedulers take objects a spec cannot state.
_NOT_DECLARABLE = {"sequentiallr", "chainedscheduler", "lambdalr", "multiplicativelr"}


def lookup_schedule(name: str) -> OptimDef | None:
    if name in _NOT_DECLARABLE:
        return None
    return _lookup(
        name,
        torch.optim.lr_scheduler,
        _SCHEDULER_BASE,
        _SCHEDULE_ALIASES,
        {"optimizer", "last_epoch", "verbose"},
    )


def schedule_names() -> list[str]:
    classes = set(_classes(torch.optim.lr_scheduler, _SCHEDULER_BASE)) - _NOT_DECLARABLE
    return sorted(set(_SCHEDULE_ALIASES) | classes)
