"""How a run is set up: optimizer and schedule arguments, parameter selectors and monitored
metrics (the device: `checks_device`). Each check appends diagnostics; none raises."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch

from tdsl import spec as S
from tdsl.errors import Diagnostics, SpecPath, check_keywords, did_you_mean
from tdsl.graph import Graph
from tdsl.optim import lookup_optimizer, lookup_schedule, optimizer_names, schedule_names
from tdsl.select import select

FILLED_SCHEDULE_ARGS = frozenset({"T_max", "total_steps", "max_lr"})  # from epochs and lr


def check_optimizer(spec: S.Spec, diags: Diagnostics) -> None:
    opt = spec.optimizer
    found = lookup_optimizer(opt.kind)
    if found is None:
        diags.error(
            ("optimizer", "kind"),
            f"unknown optimizer {opt.kind!r}",
            did_you_mean(opt.kind, optimizer_names()),
        )
    elif found.name in UNSUPPORTED_OPTIMIZERS:
        diags.error(
            ("optimizer", "kind"),
            f"optimizer {opt.kind!r} "
            f"{UNSUPPORTED_OPTIMIZERS[found.name]}, which a training step does not give",
        )
        found = None
    else:
        known = {k: v for k, v in found.arguments.items() if k != "lr"}
        ok = check_keywords(opt.args, known, f"optimizer {opt.kind!r}", ("optimizer",), diags)
        for index, group in enumerate(opt.groups):
            ok &= check_keywords(
                group.args,
                {k: False for k in found.arguments},
                f"optimizer {opt.kind!r} param groups",
                ("optimizer", "groups", index),
                diags,
            )
        trial = (
            _trial(
                ("optimizer",),
                f"optimizer {opt.kind!r}",
                diags,
                lambda: _step_once(found.cls(_trial_groups(opt), lr=opt.lr, **opt.args)),
            )
            if ok
            else None
        )
        found = trial
    if opt.schedule is not None:
        schedule = lookup_schedule(opt.schedule.kind)
        path = ("optimizer", "schedule")
        if schedule is None:
            diags.error(
                (*path, "kind"),
                f"unknown schedule {opt.schedule.kind!r}",
                did_you_mean(opt.schedule.kind, schedule_names()),
            )
        else:
            ok = check_keywords(
                opt.schedule.args,
                schedule.arguments,
                f"schedule {opt.schedule.kind!r}",
                path,
                diags,
                FILLED_SCHEDULE_ARGS,
            )
            if ok and found is not None:
                args = {
                    k: v
                    for k, v in _filled(spec, schedule.arguments).items()
                    if k not in opt.schedule.args
                }
                _trial(
                    path,
                    f"schedule {opt.schedule.kind!r}",
                    diags,
                    lambda: _step_twice(schedule.cls(found, **args, **opt.schedule.args)),
                )


# Optimizers whose step needs something a plain training step does not provide.
UNSUPPORTED_OPTIMIZERS = {
    "lbfgs": "needs a closure that re-evaluates the loss",
    "sparseadam": "needs sparse gradients",
}


def _step_once(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Group arguments (a group's `lr: x`) are only used, and so checked, by a step."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            param.grad = torch.zeros_like(param)
    optimizer.step()
    return optimizer


def _step_twice(scheduler: Any) -> None:
    """Some bad arguments (T_max: 0) only fail when the schedule first computes a rate."""
    plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    for _ in range(2):
        scheduler.optimizer.step()
        scheduler.step(1.0) if plateau else scheduler.step()


def _trial_groups(opt: S.Optimizer) -> list[dict[str, Any]]:
    """One stand-in parameter per group: enough for torch to check the arguments."""
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], **g.args} for g in opt.groups]
    return groups or [{"params": [torch.nn.Parameter(torch.zeros(1))]}]


def _filled(spec: S.Spec, arguments: Mapping[str, bool]) -> dict[str, Any]:
    total = spec.train.epochs
    filled = {"T_max": total, "total_steps": total, "max_lr": spec.optimizer.lr}
    return {k: v for k, v in filled.items() if k in arguments}


def _trial(path: SpecPath, what: str, diags: Diagnostics, build: Callable[[], Any]) -> Any:
    """Build the torch object on stand-ins: torch's own argument checks, as diagnostics."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return build()
    except Exception as exc:  # torch's wording of what is wrong with an argument
        lines = str(exc).strip().splitlines()
        diags.error(path, f"{what} refuses its arguments: {lines[0] if lines else exc!r}")
        return None


def check_selectors(
    spec: S.Spec, graph: Graph, module: torch.nn.Module, diags: Diagnostics
) -> dict[str, tuple[str, ...]]:
    """Report selectors that pick nothing or overlap; return what each one picked, keyed
    by its spec path (`loss.regularizers[0]`, `optimizer.groups[1]`)."""
    ops = {n.name: n.op for n in graph.nodes}
    picked: dict[str, tuple[str, ...]] = {}
    all_names = [name for name, _ in module.named_parameters()]
    hint = "parameters: " + ", ".join(all_names[:8]) + (" ..." if len(all_names) > 8 else "")
    for index, reg in enumerate(spec.loss.regularizers):
        chosen = select(reg, module, ops)
        picked[f"loss.regularizers[{index}]"] = tuple(chosen)
        if not chosen:
            diags.error(
                ("loss", "regularizers", index),
                f"{reg.kind} regularizer selects no parameter",
                hint,
            )
    claimed: dict[str, int] = {}
    for index, group in enumerate(spec.optimizer.groups):
        chosen = select(group, module, ops)
        picked[f"optimizer.groups[{index}]"] = tuple(chosen)
        if not chosen:
            diags.error(("optimizer", "groups", index), "param group selects no parameter", hint)
        twice = [name for name in chosen if name in claimed]
        if twice:
            diags.error(
                ("optimizer", "groups", index),
                f"parameters claimed by groups "
                f"{claimed[twice[0]]} and {index}: {', '.join(twice[:5])}",
                "make the selectors disjoint, e.g. with exclude",
            )
        for name in chosen:
            claimed.setdefault(name, index)
    rest = tuple(n for n in all_names if n not in claimed)
    if spec.optimizer.groups and rest:
        picked["optimizer (other parameters)"] = rest
    return picked


def default_monitor(spec: S.Spec) -> str:
    return "val_loss" if spec.data.split.val > 0 else "loss"


def check_monitors(spec: S.Spec, metric_names_: list[str], diags: Diagnostics) -> None:
    base = ["loss", *metric_names_]
    known = base + [f"val_{name}" for name in base]
    watched = [
        (("train", "early_stopping", "monitor"), spec.train.early_stopping),
        (("train", "checkpoint", "monitor"), spec.train.checkpoint),
    ]
    schedule = spec.optimizer.schedule
    if schedule is not None and schedule.kind in ("reduce_on_plateau", "reducelronplateau"):
        watched.append((("optimizer", "schedule", "monitor"), schedule))
    for path, item in watched:
        if item is None or item.monitor is None:
            continue
        if item.monitor not in known:
            diags.error(
                path,
                f"cannot monitor {item.monitor!r}: no such metric",
                did_you_mean(item.monitor, known),
            )
        elif item.monitor.startswith("val_") and spec.data.split.val == 0:
            diags.error(path, f"cannot monitor {item.monitor!r}: the data has no validation split")
