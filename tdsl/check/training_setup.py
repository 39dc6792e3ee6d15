"""How a run is set up: optimizer and schedule arguments, parameter selectors and monitored
metrics (the device: `checks_device`). Each check appends diagnostics; none raises."""

from __future__ import annotations

import importlib.util
import os
import shutil
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch

from tdsl import spec as S
from tdsl.errors import Diagnostics, SpecPath, check_keywords
from tdsl.model.graph import Graph, module_ops
from tdsl.model.selectors import select, why_empty
from tdsl.registry import optimizer_args as optim_args
from tdsl.registry.aliases import suggest
from tdsl.registry.optimizers import (
    FILLED_SCHEDULE_ARGS,
    OptimDef,
    lookup_optimizer,
    lookup_schedule,
    optimizer_names,
    schedule_names,
)
from tdsl.registry.refusals import refusal_hint
from tdsl.wording import did_you_mean, install_hint, show


def check_optimizer(spec: S.Spec, diags: Diagnostics) -> None:
    opt = spec.optimizer
    found = lookup_optimizer(opt.kind)
    if found is None:
        diags.error(
            ("optimizer", "kind"),
            f"unknown optimizer {opt.kind!r}",
            suggest("optimizer", opt.kind, optimizer_names()),
        )
    elif found.name in UNSUPPORTED_OPTIMIZERS:
        diags.error(
            ("optimizer", "kind"),
            f"optimizer {opt.kind!r} "
            f"{UNSUPPORTED_OPTIMIZERS[found.name]}, which a training step does not give",
        )
        found = None
    elif not _arguments_ok(opt, found, diags):
        found = None
    if opt.schedule is not None:
        _check_schedule(spec, found, diags)


def _arguments_ok(opt: S.Optimizer, found: OptimDef, diags: Diagnostics) -> bool:
    what = f"optimizer {opt.kind!r}"
    known = {k: v for k, v in found.arguments.items() if k != "lr"}
    ok = check_keywords(opt.args, known, what, ("optimizer",), diags)
    for index, group in enumerate(opt.groups):
        ok &= check_keywords(
            group.args,
            {k: False for k in found.arguments},
            f"{what} param groups",
            ("optimizer", "groups", index),
            diags,
        )
    if not ok:
        return False
    groups = [g.args for g in opt.groups]
    if optim_args.checkable(found.cls, opt.args, groups):
        return optim_args.check_arguments(found.cls, what, opt.lr, opt.args, groups, diags)
    step = lambda: _step_once(found.cls, opt)  # noqa: E731
    return _trial(("optimizer",), what, opt.args, diags, step) is not None


def _check_schedule(spec: S.Spec, found: OptimDef | None, diags: Diagnostics) -> None:
    """The schedule's name and arguments; it is tried on a stand-in of the optimizer when
    the optimizer's own arguments are right (`found`)."""
    opt, path = spec.optimizer, ("optimizer", "schedule")
    schedule = lookup_schedule(opt.schedule.kind)
    if schedule is None:
        diags.error(
            (*path, "kind"),
            f"unknown schedule {opt.schedule.kind!r}",
            suggest("schedule", opt.schedule.kind, schedule_names()),
        )
        return
    what = f"schedule {opt.schedule.kind!r}"
    given = opt.schedule.args
    ok = check_keywords(given, schedule.arguments, what, path, diags, FILLED_SCHEDULE_ARGS)
    if not ok or found is None:
        return
    filled = {k: v for k, v in _filled(spec, schedule.arguments).items() if k not in given}
    stand_in = optim_args.StandInOptimizer(
        found.cls, opt.lr, opt.args, [g.args for g in opt.groups]
    )
    _trial(path, what, given, diags, lambda: _step_twice(schedule.cls(stand_in, **filled, **given)))


# Optimizers whose step needs something a plain training step does not provide.
UNSUPPORTED_OPTIMIZERS = {
    "lbfgs": "needs a closure that re-evaluates the loss",
    "sparseadam": "needs sparse gradients",
}


def _step_once(cls: type, opt: S.Optimizer) -> torch.optim.Optimizer:
    """The optimizer on one stand-in parameter per group, stepped once: group arguments
    (a group's `lr: x`) are only used, and so checked, by a step."""
    groups = [
        {"params": [torch.nn.Parameter(torch.zeros(1))], **optim_args.as_torch(args)}
        for args in [g.args for g in opt.groups] or [{}]
    ]
    optimizer = cls(groups, lr=opt.lr, **optim_args.as_torch(opt.args))
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


def _filled(spec: S.Spec, arguments: Mapping[str, bool]) -> dict[str, Any]:
    # Stand-ins to try the schedule on; where train failed to convert, its default.
    total = (spec.train or S.Train()).epochs
    filled = {"T_max": total, "total_steps": total, "max_lr": spec.optimizer.lr}
    return {k: v for k, v in filled.items() if k in arguments}


def _trial(
    path: SpecPath,
    what: str,
    args: Mapping[str, Any],
    diags: Diagnostics,
    build: Callable[[], Any],
) -> Any:
    """Build the torch object on stand-ins: torch's own argument checks, as diagnostics."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return build()
    except Exception as exc:  # torch's checks of an argument: the values, and its reason
        diags.error(path, f"{what} refuses its arguments {show(dict(args))}", refusal_hint(exc))
        return None


def check_selectors(
    spec: S.Spec, graph: Graph, module: torch.nn.Module, diags: Diagnostics
) -> dict[str, tuple[str, ...]]:
    """Report selectors that pick nothing or overlap; return what each one picked, keyed
    by its spec path (`loss.regularizers[0]`, `optimizer.groups[1]`)."""
    ops = module_ops(graph)
    picked: dict[str, tuple[str, ...]] = {}
    all_names = [name for name, _ in module.named_parameters()]
    hint = "parameters: " + ", ".join(all_names[:8]) + (" ..." if len(all_names) > 8 else "")
    for index, reg in enumerate(spec.loss.regularizers):
        chosen = select(reg, module, ops)
        picked[f"loss.regularizers[{index}]"] = tuple(chosen)
        if not chosen:
            diags.error(
                ("loss", "regularizers", index),
                f"{reg.kind} regularizer selects no parameter: {why_empty(reg, module, ops)}",
                hint,
            )
    claimed: dict[str, int] = {}
    for index, group in enumerate(spec.optimizer.groups):
        chosen = select(group, module, ops)
        picked[f"optimizer.groups[{index}]"] = tuple(chosen)
        if not chosen:
            diags.error(
                ("optimizer", "groups", index),
                f"param group selects no parameter: {why_empty(group, module, ops)}",
                hint,
            )
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
    trainable = {name for name, param in module.named_parameters() if param.requires_grad}
    rest = tuple(n for n in all_names if n not in claimed and n in trainable)
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
        elif item.monitor.startswith("val_") and spec.data is not None and spec.data.split.val == 0:
            diags.error(path, f"cannot monitor {item.monitor!r}: the data has no validation split")


INSTALL_TENSORBOARD = install_hint("tensorboard", "tensorboard")


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def check_tensorboard(spec: S.Spec, diags: Diagnostics) -> None:
    """A located error when the spec asks for TensorBoard logging it cannot have."""
    if spec.train.tensorboard and not tensorboard_available():
        diags.error(
            ("train", "tensorboard"),
            "TensorBoard logging needs the tensorboard package, which is not installed",
            f"{INSTALL_TENSORBOARD}, or set train.tensorboard: false",
        )


def check_compile(spec: S.Spec, diags: Diagnostics) -> None:
    """What `train.compile: true` cannot be combined with (yet)."""
    if not spec.train.compile:
        return
    path = ("train", "compile")
    refused = {
        "train.accumulate > 1": spec.train.accumulate > 1,
        "train.on_nan: skip_batch": spec.train.on_nan == "skip_batch",
        "device.precision: fp16": spec.device.precision == "fp16",
        "device.strategy: ddp": getattr(spec.device, "strategy", "single") == "ddp",
    }
    for what, present in refused.items():
        if present:
            diags.error(path, f"a compiled step does not support {what}; set train.compile: false")
    on_cpu = spec.device.name in ("cpu", "auto") and not torch.cuda.is_available()
    if on_cpu and not has_cpp_compiler():
        diags.error(
            path,
            f"torch.compile needs a C++ compiler on the CPU and "
            f"{os.environ.get('CXX', 'g++')!r} was not found; "
            "install one (e.g. g++) or set train.compile: false",
        )


def has_cpp_compiler() -> bool:
    """Whether torch.compile finds a C++ compiler for CPU kernels ($CXX, else g++, or clang++)."""
    return bool(shutil.which(os.environ.get("CXX", "g++")) or shutil.which("clang++"))
