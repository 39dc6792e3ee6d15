"""Optimizers and learning-rate schedules by name.

Short names for the common ones; every other `torch.optim` optimizer or scheduler is
reachable by its lower-cased class name (`nadam`, `cycliclr`). Arguments are checked
against the class's own signature.
"""

from __future__ import annotations

import inspect

import attrs
import torch

from tdsl.ops.registry import signature_arguments


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
_SCHEDULE_ALIASES = {
    "step": "StepLR",
    "multi_step": "MultiStepLR",
    "exponential": "ExponentialLR",
    "cosine": "CosineAnnealingLR",
    "one_cycle": "OneCycleLR",
    "reduce_on_plateau": "ReduceLROnPlateau",
    "linear_warmup": "LinearLR",
}


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


def _lookup(name: str, module: object, base: type, aliases: dict[str, str], skip: set[str]):
    classes = _classes(module, base)
    cls = getattr(module, aliases[name]) if name in aliases else classes.get(name)
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
