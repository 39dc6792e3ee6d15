"""Optimizer arguments checked from their values, without building an optimizer.

Constructing any torch 2.13 optimizer imports torch's compiler stack (about a second: its
`add_param_group` is wrapped to keep dynamo out), more than the rest of `tdsl validate`. So
for the common optimizers, validation applies torch's own argument rules here (stricter on
types: a flag must be a boolean); other optimizers, and options such as `fused` whose limits
depend on the machine, still get a trial build. Schedules are tried on `StandInOptimizer`.
tests/test_optim_args.py checks that whatever these rules accept, torch accepts too.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from tdsl.errors import Diagnostics, SpecPath
from tdsl.wording import show

# torch refuses a negative value for each of these.
_AT_LEAST_ZERO = frozenset(
    {"lr", "eps", "weight_decay", "momentum", "alpha", "lr_decay", "initial_accumulator_value"}
)
_FLAGS = frozenset({"nesterov", "maximize", "amsgrad", "centered", "decoupled_weight_decay"})
_CHECKED = _AT_LEAST_ZERO | _FLAGS | {"betas", "dampening"}
_PLAIN = (
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.Adagrad,
    torch.optim.RMSprop,
)


def checkable(cls: type, args: Mapping[str, Any], groups: Sequence[Mapping[str, Any]]) -> bool:
    """Whether these rules cover every argument given (else build the optimizer to see)."""
    given = set(args).union(*(set(g) for g in groups))
    return cls in _PLAIN and given <= _CHECKED


def check_arguments(
    cls: type,
    what: str,
    lr: float,
    args: Mapping[str, Any],
    groups: Sequence[Mapping[str, Any]],
    diags: Diagnostics,
) -> bool:
    """Report every argument torch would refuse, at the optimizer or group that sets it."""
    ok = _check_values(what, args, ("optimizer",), diags)
    for index, group in enumerate(groups):
        ok &= _check_values(what, group, ("optimizer", "groups", index), diags)
    if not ok:
        return False
    defaults = {**signature_defaults(cls), **args, "lr": lr}
    for index, group in enumerate(groups or ({},)):
        effective = {**defaults, **group}
        momentum, dampening = effective.get("momentum", 0), effective.get("dampening", 0)
        if effective.get("nesterov", False) and (momentum <= 0 or dampening != 0):
            where = ("optimizer", "groups", index) if "nesterov" in group else ("optimizer",)
            diags.error(
                (*where, "nesterov"),
                f"{what}: nesterov needs a momentum above 0 and dampening 0 "
                f"(got momentum {show(momentum)}, dampening {show(dampening)})",
            )
            ok = False
    return ok


def _check_values(what: str, args: Mapping[str, Any], path: SpecPath, diags: Diagnostics) -> bool:
    ok = True
    for key, value in args.items():
        problem = _problem(key, value)
        if problem:
            diags.error((*path, key), f"{what}: {key} {problem} (got {show(value)})")
            ok = False
    return ok


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _problem(key: str, value: Any) -> str | None:
    if key in _FLAGS:
        return None if isinstance(value, bool) else "must be true or false"
    if key == "betas":
        pair = isinstance(value, list | tuple) and len(value) == 2
        if pair and all(_number(v) and 0 <= v < 1 for v in value):
            return None
        return "must be two numbers in [0, 1)"
    if key in _AT_LEAST_ZERO:
        return None if _number(value) and value >= 0 else "must be a number >= 0"
    return None if _number(value) else "must be a number"


def as_torch(args: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments as torch wants them: it refuses `betas: [0, 0.99]` unless both are floats."""
    betas = args.get("betas")
    if isinstance(betas, list | tuple) and all(_number(b) for b in betas):
        return {**args, "betas": tuple(float(b) for b in betas)}
    return dict(args)


def signature_defaults(cls: type) -> dict[str, Any]:
    """The optimizer's defaults as its constructor declares them."""
    return dict(_signature_defaults(cls))


@functools.lru_cache(maxsize=64)
def _signature_defaults(cls: type) -> tuple[tuple[str, Any], ...]:
    parameters = inspect.signature(cls.__init__).parameters.values()
    return tuple(
        (p.name, p.default)
        for p in parameters
        if p.name not in ("self", "params") and p.default is not inspect.Parameter.empty
    )


class StandInOptimizer(torch.optim.Optimizer):
    """What a schedule reads of an optimizer (its defaults and param groups) with no tensors
    behind it, so schedule arguments can be tried without building the real one."""

    def __init__(self, cls: type, lr: float, args: Mapping[str, Any], groups: Sequence[Any]):
        # torch's constructor is deliberately skipped: it is what would import dynamo.
        self.defaults = {**signature_defaults(cls), **as_torch(args), "lr": lr}
        groups = [as_torch(g) for g in groups] or [{}]
        self.param_groups = [{**self.defaults, **g, "params": []} for g in groups]
        self.state: dict[Any, Any] = {}

    def step(self, closure: Any = None) -> None:
        return None
