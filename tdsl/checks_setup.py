"""How a run is set up: optimizer and schedule arguments, parameter selectors, monitored
metrics, and the device. Each check appends diagnostics; none raises."""

from __future__ import annotations

import re
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


_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_device(spec: S.Spec, diags: Diagnostics) -> None:
    name, precision = spec.device.name, spec.device.precision
    if not _DEVICE.fullmatch(name):
        diags.error(
            ("device", "name"),
            f"unknown device {name!r}",
            "expected auto, cpu, cuda, cuda:N or mps",
        )
        return
    if name.startswith("cuda"):
        count = torch.cuda.device_count()
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= count:
            diags.error(
                ("device", "name"),
                f"device {name!r} is not available here ({count} CUDA device(s))",
                "use device: auto to pick what exists",
            )
    elif name == "mps" and not torch.backends.mps.is_available():
        diags.error(
            ("device", "name"),
            "device 'mps' is not available here",
            "use device: auto to pick what exists",
        )
    resolved_cpu = name == "cpu" or (
        name == "auto" and not torch.cuda.is_available() and not torch.backends.mps.is_available()
    )
    if precision == "fp16" and resolved_cpu:
        diags.error(
            ("device", "precision"),
            "fp16 autocast needs a GPU; this run is on the CPU",
            "use precision: bf16 or fp32",
        )


_DDP_ONLY = {"backend": "auto", "uneven_batches": False, "timeout": 300.0}


def check_distributed(spec: S.Spec, diags: Diagnostics, processes: int | None = None) -> None:
    """Data-parallel settings. `processes`: how many will train (`--nproc N`); by default
    what a launcher told this process (WORLD_SIZE), else unknown and not checked."""
    from tdsl.distributed import launched  # torch.distributed, only when validating

    device, local = spec.device, processes
    launch = launched() if processes is None else None
    if launch is not None:
        processes, local = launch.world_size, launch.local_world_size
    if device.strategy != "ddp":
        if processes is not None and processes > 1:
            diags.error(
                ("device", "strategy"),
                f"{processes} processes cannot share a run whose strategy is single: each "
                "would train alone",
                "set device: {strategy: ddp} to train data-parallel",
            )
        for key, default in _DDP_ONLY.items():
            if getattr(device, key) != default:
                diags.warning(("device", key), f"{key} is only used with strategy: ddp")
        return
    _check_ddp_device(device, diags)
    if processes is not None:
        _check_ddp_batches(spec, diags, processes, local or processes)


def _on_cuda(device: S.Device) -> bool:
    return device.name.startswith("cuda") or (device.name == "auto" and torch.cuda.is_available())


def _check_ddp_device(device: S.Device, diags: Diagnostics) -> None:
    if not torch.distributed.is_available():
        diags.error(("device", "strategy"), "this build of torch has no torch.distributed")
        return
    if device.name == "mps":
        diags.error(
            ("device", "name"),
            "strategy ddp cannot use mps: torch.distributed has no backend for it",
            "use device: cpu (gloo) or cuda (nccl)",
        )
    elif re.fullmatch(r"cuda:\d+", device.name):
        diags.error(
            ("device", "name"),
            f"with strategy ddp each process uses the GPU of its local rank; {device.name} "
            "would put every process on one GPU",
            "write cuda or auto",
        )
    if device.backend == "nccl" and not _on_cuda(device):
        diags.error(
            ("device", "backend"),
            "backend nccl needs CUDA devices; this run is on the CPU",
            "use backend: gloo, or auto",
        )
    elif device.backend == "nccl" and not torch.distributed.is_nccl_available():
        diags.error(
            ("device", "backend"),
            "backend nccl is not available in this build of torch",
            "use backend: gloo, or auto",
        )


def _check_ddp_batches(spec: S.Spec, diags: Diagnostics, processes: int, local: int) -> None:
    from tdsl.data import train_rows

    device, batch = spec.device, spec.train.batch_size
    gpus = torch.cuda.device_count()
    if _on_cuda(device) and 0 < gpus < local:
        diags.error(
            ("device", "name"),
            f"{local} processes on this machine but only {gpus} CUDA device(s)",
            f"start at most {gpus} processes per machine",
        )
    if batch < processes:
        diags.error(
            ("train", "batch_size"),
            f"batch_size {batch} is the global batch, smaller than the {processes} processes "
            "that each take a share of it",
            f"use at least {processes} rows",
        )
    elif batch % processes and not device.uneven_batches:
        diags.error(
            ("train", "batch_size"),
            f"batch_size {batch} is the global batch and does not divide evenly among "
            f"{processes} processes",
            f"use a multiple of {processes}, or set device.uneven_batches: true",
        )
    rest = train_rows(spec) % batch
    if 0 < rest < processes:
        diags.warning(
            ("train", "batch_size"),
            f"the last batch of each epoch has {rest} row(s), fewer than the {processes} "
            "processes, and is left out of training (different rows each epoch)",
            f"choose a batch_size that leaves no remainder or at least {processes} rows",
        )
