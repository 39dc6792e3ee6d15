"""Schedules that do not fit the run: a step size, milestone, warmup or cycle that the run
never reaches, so the learning rate never changes as written (or, for one_cycle, a cycle
shorter than the run, which stops it). The run's length is counted as the schedule counts:
epochs, or with `interval: step` optimizer steps (rows of the training split over the
batch size, per epoch)."""

from __future__ import annotations

import math
from typing import Any

from tdsl import spec as S
from tdsl.errors import Diagnostics
from tdsl.registry.optimizers import lookup_schedule
from tdsl.wording import show


def run_length(spec: S.Spec, rows: dict[str, int] | None) -> tuple[int, str] | None:
    """How many times the schedule steps in the run, and the unit; None where unknown."""
    schedule, epochs = spec.optimizer.schedule, spec.train.epochs
    if schedule is None:
        return None
    if schedule.interval == "epoch" or _class_name(schedule.kind) == "ReduceLROnPlateau":
        return epochs, "epochs"
    if not rows or not rows.get("train"):
        return None
    per_epoch = max(1, math.ceil(rows["train"] / spec.train.batch_size))
    return epochs * per_epoch, f"steps ({epochs} epochs of {per_epoch})"


def written(spec: S.Spec, path: tuple) -> bool | None:
    """Whether the YAML (or `--set`) wrote this key; None where unknown (a spec built in
    Python, or a Python spec file)."""
    positions = getattr(spec.source, "positions", None)
    if positions is None:
        return None
    path = tuple(path)
    return path in positions or path in getattr(spec.source, "overridden", ())


def _class_name(kind: str) -> str | None:
    found = lookup_schedule(kind)
    return None if found is None else found.cls.__name__


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_schedule_length(spec: S.Spec, rows: dict[str, int] | None, diags: Diagnostics) -> None:
    length = run_length(spec, rows)
    if length is None:
        return
    total, unit = length
    schedule = spec.optimizer.schedule
    name, args, path = _class_name(schedule.kind), schedule.args, ("optimizer", "schedule")
    run = f"the run has {total} {unit}"
    interval = "; or count in steps with interval: step" if schedule.interval == "epoch" else ""

    def warn(key: str, message: str, hint: str) -> None:
        diags.warning((*path, key), f"schedule {schedule.kind!r}: {message}", hint)

    if name == "StepLR" and _whole(args.get("step_size")) and args["step_size"] >= total:
        warn(
            "step_size",
            f"step_size {args['step_size']} never fires: {run}",
            f"use a step_size below {total}{interval}",
        )
    elif name == "MultiStepLR" and isinstance(args.get("milestones"), list | tuple):
        late = [m for m in args["milestones"] if _whole(m) and m >= total]
        if late:
            never = "never fire" if len(late) > 1 else "never fires"
            warn(
                "milestones",
                f"milestones {show(late)} {never}: {run}",
                f"use milestones below {total}{interval}",
            )
    elif name == "WarmupCosine" and _whole(args.get("warmup")) and args["warmup"] >= total:
        warn(
            "warmup",
            f"warmup {args['warmup']} never ends: {run}",
            f"use a warmup well below {total}{interval}",
        )
    elif name == "LinearLR":
        iters = args.get("total_iters", 5)
        if _whole(iters) and iters >= total:
            default = "" if "total_iters" in args else " (the default)"
            warn(
                "total_iters" if default == "" else "kind",
                f"total_iters {iters}{default} never completes the warmup: {run}",
                f"use total_iters below {total}{interval}",
            )
    elif name == "CosineAnnealingLR" and _whole(args.get("T_max")) and args["T_max"] > total:
        warn(
            "T_max",
            f"T_max {args['T_max']} decays only part way: {run}",
            f"leave T_max out: tdsl fills it with the run's {total}",
        )
    elif name == "CosineAnnealingWarmRestarts" and _whole(args.get("T_0")) and args["T_0"] >= total:
        warn(
            "T_0",
            f"T_0 {args['T_0']} never restarts: {run}",
            f"use a T_0 below {total}, or kind: cosine",
        )
    elif name == "ReduceLROnPlateau":
        patience = args.get("patience", 10)
        if _whole(patience) and patience >= total:
            key = "patience" if "patience" in args else "kind"
            default = "" if "patience" in args else " (the default)"
            warn(
                key,
                f"patience {patience}{default} never lowers the rate: {run}",
                f"use a patience below {total}",
            )
    elif name == "OneCycleLR" and _whole(args.get("total_steps")):
        steps = args["total_steps"]
        if steps < total:
            diags.error(
                (*path, "total_steps"),
                f"schedule {schedule.kind!r}: total_steps {steps} is shorter than the run "
                f"({total} {unit}): torch stops the run when the cycle is over",
                f"leave total_steps out: tdsl fills it with the run's {total}",
            )
        elif steps > total:
            warn(
                "total_steps",
                f"total_steps {steps} never completes the cycle: {run}",
                f"leave total_steps out: tdsl fills it with the run's {total}",
            )


def check_early_stopping_length(spec: S.Spec, diags: Diagnostics) -> None:
    """Early stopping whose patience outlasts the run never stops it."""
    stopping, epochs = spec.train.early_stopping, spec.train.epochs
    if stopping is not None and epochs > 1 and stopping.patience >= epochs:
        given = written(spec, ("train", "early_stopping", "patience")) is not False
        default = "" if given else " (the default)"
        diags.warning(
            ("train", "early_stopping", "patience"),
            f"early stopping never stops the run: patience {stopping.patience}{default} >= "
            f"epochs {epochs}",
            f"use a patience below {epochs}, or more epochs",
        )
