"""Warnings for specs that train without an error but train wrong: an optimizer setting
outside the range where it converges, a checkpoint or early-stopping `mode` opposite to what
its monitor means, and options that nothing reads for this spec. Each is located at the value
written, shows it, and says what to do. (Schedules longer than the run: `schedule_length`.)
"""

from __future__ import annotations

import math
from typing import Any

from tdsl import spec as S
from tdsl.check.schedule_length import (
    check_early_stopping_length,
    check_schedule_length,
    written,
)
from tdsl.errors import Diagnostics, SpecPath
from tdsl.registry.metrics import lookup_metric
from tdsl.registry.optimizers import lookup_optimizer, lookup_schedule
from tdsl.wording import show


def check_silent_mistakes(spec: S.Spec, rows: dict[str, int] | None, diags: Diagnostics) -> None:
    """Every warning of this module; `rows`: rows per split, where the data was read."""
    check_optimizer_ranges(spec, diags)
    check_monitor_modes(spec, diags)
    check_ignored_options(spec, diags)
    check_schedule_length(spec, rows, diags)
    check_early_stopping_length(spec, diags)


# --- optimizer settings that make the updates grow instead of settle --------------------


def check_optimizer_ranges(spec: S.Spec, diags: Diagnostics) -> None:
    opt = spec.optimizer
    found = lookup_optimizer(opt.kind)
    if found is None:
        return  # reported by the optimizer check
    what = f"optimizer {opt.kind!r}"
    places = [(("optimizer",), opt.args)] + [
        (("optimizer", "groups", i), g.args) for i, g in enumerate(opt.groups)
    ]
    for path, args in places:
        for key, value in args.items():
            problem = _diverging(found.cls.__name__, key, value)
            if problem is not None:
                message, hint = problem
                diags.warning((*path, key), f"{what}: {message}", hint)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _diverging(optimizer: str, key: str, value: Any) -> tuple[str, str] | None:
    """(message, hint) for a value torch accepts but the optimizer does not converge with."""
    if key == "momentum" and _number(value) and value >= 1:
        return (
            f"momentum {show(value)} keeps every past step at full weight or more, so the "
            "updates grow instead of settling",
            "use a momentum in [0, 1); 0.9 is the usual",
        )
    if key == "dampening" and _number(value) and not 0 <= value < 1:
        effect = (
            "lets no new gradient into the momentum"
            if value == 1
            else "turns each new gradient around"
            if value > 1
            else "amplifies each new gradient"
        )
        return f"dampening {show(value)} {effect}", "use a dampening in [0, 1); 0 is the usual"
    if key == "alpha" and optimizer == "RMSprop" and _number(value) and value >= 1:
        return (
            f"alpha {show(value)} never lets the squared-gradient average take in a "
            "gradient, so steps are divided by eps alone",
            "use an alpha in [0, 1); 0.99 is the usual",
        )
    pair = isinstance(value, list | tuple) and len(value) == 2 and all(map(_number, value))
    if key == "betas" and pair and 0 <= value[0] < 1 and 0 <= value[1] < 1:
        beta1, beta2 = value
        if beta1 > 0 and beta1 * beta1 >= beta2:
            # Adam's steps stay bounded only when beta1^2 < beta2 (Reddi et al., 2018).
            return (
                f"betas {show(list(value))} average the gradient over longer than its square "
                f"(beta1² = {beta1 * beta1:g} >= beta2 = {beta2:g}), so steps can grow "
                "without bound",
                "use beta2 above beta1², e.g. betas: [0.9, 0.999]",
            )
    return None


# --- checkpoint and early-stopping modes ---------------------------------------------------


def monitor_direction(monitor: str) -> str | None:
    """ "min" for a loss or an error metric, "max" for a score; None when unknown."""
    name = monitor.removeprefix("val_")
    if name == "loss" or name.startswith("loss_"):
        return "min"
    # A metric of one of several outputs is `<output>_<kind>`: the longest known kind.
    suffixes = [name] + [name[i + 1 :] for i, c in enumerate(name) if c == "_"]
    found = next((m for m in map(lookup_metric, suffixes) if m is not None), None)
    if found is None:
        return None
    return "max" if found.higher_is_better else "min"


def check_monitor_modes(spec: S.Spec, diags: Diagnostics) -> None:
    default = "val_loss" if spec.data.split.val > 0 else "loss"
    watched: list[tuple[SpecPath, str, Any]] = []
    stopping, checkpoint = spec.train.early_stopping, spec.train.checkpoint
    if stopping is not None:
        watched.append((("train", "early_stopping"), stopping.monitor, stopping.mode))
    if checkpoint is not None:
        watched.append((("train", "checkpoint"), checkpoint.monitor or default, checkpoint.mode))
    schedule = spec.optimizer.schedule
    if schedule is not None and _is_plateau(schedule.kind):
        # torch's ReduceLROnPlateau has no "auto": without a mode it minimizes.
        watched.append(
            (("optimizer", "schedule"), schedule.monitor, schedule.args.get("mode", "min"))
        )
    for path, monitor, mode in watched:
        wanted = monitor_direction(monitor)
        if mode not in ("min", "max") or wanted is None or mode == wanted:
            continue
        better = "lower" if wanted == "min" else "higher"
        plateau = path[-1] == "schedule"
        implied = " (the default)" if plateau and "mode" not in schedule.args else ""
        worse = "highest" if wanted == "min" else "lowest"
        effect = {
            "checkpoint": f"the best checkpoint would be the epoch where it is {worse}",
            "early_stopping": "early stopping would take progress for getting worse and "
            "stop a run that is improving",
            "schedule": "the rate would be lowered while the run is improving",
        }[path[-1]]
        diags.warning(
            (*path, "mode"),
            f"mode {mode}{implied} on {monitor!r}, which is {better} when better: {effect}",
            f"use mode: {wanted}"
            + ("" if plateau else ", or leave mode out (auto picks it from the monitor)"),
        )


def _is_plateau(kind: str) -> bool:
    found = lookup_schedule(kind)
    return found is not None and found.cls.__name__ == "ReduceLROnPlateau"


# --- options nothing reads ------------------------------------------------------------------


def check_ignored_options(spec: S.Spec, diags: Diagnostics) -> None:
    schedule = spec.optimizer.schedule
    path: SpecPath = ("optimizer", "schedule", "monitor")
    plain = schedule is not None and lookup_schedule(schedule.kind) is not None
    given = written(spec, path)
    shown = given or (given is None and plain and schedule.monitor != "val_loss")
    if plain and shown and not _is_plateau(schedule.kind):
        diags.warning(
            path,
            f"schedule {schedule.kind!r} ignores monitor {show(schedule.monitor)}: only "
            "reduce_on_plateau watches a value",
            "remove monitor, or use kind: reduce_on_plateau",
        )
    split = spec.data.split
    if split.stratify and split.val == 0 and split.test == 0:
        diags.warning(
            ("data", "split", "stratify"),
            "stratify has nothing to balance: the split has no val or test part",
            "remove stratify, or give val a share",
        )
    checkpoint = spec.train.checkpoint
    if checkpoint is not None and not checkpoint.save_best:
        for key, default in (("monitor", None), ("mode", "auto")):
            given = written(spec, ("train", "checkpoint", key))
            if given or (given is None and getattr(checkpoint, key) != default):
                diags.warning(
                    ("train", "checkpoint", key),
                    f"checkpoint {key} {show(getattr(checkpoint, key))} is ignored: "
                    "save_best is false, so no best checkpoint is picked",
                    f"remove {key}, or set save_best: true",
                )
