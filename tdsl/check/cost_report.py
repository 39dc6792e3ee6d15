"""The cost estimate as text and JSON, memory sizes as written on the command line, and the
warning when a training step would not fit the memory given."""

from __future__ import annotations

import re
from typing import Any

from tabulate import tabulate

from tdsl import spec as S
from tdsl.check.cost import Cost, Fit
from tdsl.errors import Diagnostic, Diagnostics
from tdsl.spec.load_dump import locate

# GB and GiB alike are 2**30 bytes: GPU memory is sold in binary units ("24GB" cards).
_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?", re.IGNORECASE)


def parse_size(text: str) -> int:
    """`24GB`, `24GiB`, `512MB`, `1.5T` -> bytes. Raises ValueError for anything else."""
    match = _SIZE.fullmatch(text.strip())
    if match is None or not re.search(r"[A-Za-z]", text):
        raise ValueError(f"expected a memory size such as 24GB or 512MiB, got {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def parse_device(text: str) -> tuple[str, int | None]:
    """`cuda:24GB` -> ("cuda", 24 GiB); `cuda:1` and `cpu` name a device with no size."""
    name, _, size = text.rpartition(":")
    if name and re.search(r"[A-Za-z]", size):
        return name, parse_size(size)
    return text, None


def size(count: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.2f} {unit}"
    return f"{int(count)} B"


def flops(count: float) -> str:
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if count >= scale:
            return f"{count / scale:.2f} {unit}"
    return f"{int(count):,} FLOP"


def cost_text(cost: Cost, fit: Fit | None = None, seconds: float | None = None) -> str:
    """The per-layer table, then memory, FLOPs and data; `seconds`: one step's measured
    time, from which epoch and run times follow."""
    body = [(c.name, size(c.activation_bytes), flops(c.train_flops)) for c in cost.layers]
    table = tabulate(
        body,
        headers=("Layer", "Activations", "FLOPs/step"),
        tablefmt="simple",
        colalign=("left", "right", "right"),
    )
    where = f" per process ({cost.processes} processes)" if cost.processes > 1 else ""
    optimizer = "unknown" if cost.optimizer_bytes is None else size(cost.optimizer_bytes)
    lines = [
        f"Memory of one training step of {cost.batch_size} rows{where} ({cost.precision}"
        + (", fp32 master weights" if cost.precision != "fp32" else "")
        + "):",
        f"  parameters       {size(cost.param_bytes)}",
        f"  gradients        {size(cost.grad_bytes)}",
        f"  optimizer state  {optimizer} ({cost.optimizer}: {cost.optimizer_state})",
    ]
    if cost.extra_bytes:
        lines.append(f"  other            {size(cost.extra_bytes)} ({cost.extra_note})")
    lines += [
        f"  activations      {size(cost.activation_bytes)} (saved for backward)",
        f"  total            {size(cost.step_bytes)}"
        + (" + optimizer state" if cost.optimizer_bytes is None else ""),
    ]
    if fit is not None:
        verdict = "fits" if fit.fits else "does not fit"
        lines.append(
            f"  {verdict} in {size(fit.budget)}: "
            + (f"{size(fit.headroom)} to spare" if fit.fits else f"{size(-fit.headroom)} over")
            + (f"; largest batch_size that fits: {fit.largest_batch}" if fit.largest_batch else "")
        )
    lines += [
        "FLOPs:",
        f"  training step    {flops(cost.train_flops)} (forward and backward)",
        f"  evaluation batch {flops(cost.eval_flops)} ({cost.eval_batch_size} rows)",
    ]
    if cost.train_batches is not None:
        lines += [
            f"  epoch            {flops(cost.epoch_flops)} ({cost.train_rows:,} training rows in "
            f"{cost.train_batches:,} batches; {cost.val_rows or 0:,} validation rows in "
            f"{cost.eval_batches:,})",
            f"  run              {flops(cost.run_flops)} ({cost.epochs} epochs)",
        ]
    if seconds is not None and cost.train_batches is not None:
        rate = cost.train_flops / seconds
        epoch = cost.epoch_flops / rate / cost.processes
        lines += [
            f"Time (measured {flops(rate)}/s here):",
            f"  epoch            {_duration(epoch)}",
            f"  run              {_duration(epoch * cost.epochs)}",
        ]
    return table + "\n" + "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def cost_json(cost: Cost, fit: Fit | None = None, seconds: float | None = None) -> dict[str, Any]:
    """The estimate for tools: bytes and FLOPs as integers."""
    data: dict[str, Any] = {
        "batch_size": cost.batch_size,
        "processes": cost.processes,
        "precision": cost.precision,
        "memory": {
            "parameters": cost.param_bytes,
            "gradients": cost.grad_bytes,
            "optimizer_state": cost.optimizer_bytes,
            "optimizer": cost.optimizer,
            "other": cost.extra_bytes,
            "activations": cost.activation_bytes,
            "total": cost.step_bytes,
        },
        "layers": [
            {"name": c.name, "activations": c.activation_bytes, "train_flops": c.train_flops}
            for c in cost.layers
        ],
        "flops": {
            "train_step": cost.train_flops,
            "eval_batch": cost.eval_flops,
            "epoch": cost.epoch_flops,
            "run": cost.run_flops,
        },
        "data": {
            "train_rows": cost.train_rows,
            "train_batches": cost.train_batches,
            "val_rows": cost.val_rows,
            "eval_batches": cost.eval_batches,
            "epochs": cost.epochs,
        },
    }
    if fit is not None:
        data["fit"] = {
            "budget": fit.budget,
            "fits": fit.fits,
            "headroom": fit.headroom,
            "largest_batch_size": fit.largest_batch,
        }
    if seconds is not None and cost.train_batches is not None:
        epoch = cost.epoch_flops / (cost.train_flops / seconds) / cost.processes
        data["time"] = {
            "step_seconds": seconds,
            "epoch_seconds": epoch,
            "run_seconds": epoch * cost.epochs,
        }
    return data


def fit_warning(spec: S.Spec, fit: Fit) -> Diagnostic | None:
    """A warning at train.batch_size when one step would not fit, located in the file."""
    if fit.fits:
        return None
    diags = Diagnostics()
    hint = (
        f"batch_size {fit.largest_batch} would fit"
        if fit.largest_batch
        else "not even one row fits: a smaller model, or more memory"
    )
    diags.warning(
        ("train", "batch_size"),
        f"one training step needs about {size(fit.needed)}, more than the {size(fit.budget)} given",
        hint,
    )
    return locate(diags.items[0], spec.source)
