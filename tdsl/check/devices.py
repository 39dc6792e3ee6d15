"""Where a run happens: the device name, its precision, and data-parallel settings
(`strategy: ddp`) against the processes that will run it. Each check appends diagnostics;
none raises."""

from __future__ import annotations

import os
import re

import attrs
import torch

from tdsl import spec as S
from tdsl.errors import Diagnostics, DistributedError

_DEVICE = re.compile(S.DEVICE_NAME)


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


@attrs.frozen
class Launch:
    """What torchrun tells each process it starts (RANK, WORLD_SIZE, LOCAL_RANK, ...)."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int


def launched() -> Launch | None:
    """This process's place among the launched ones; None when no launcher started it."""
    env = os.environ
    if "WORLD_SIZE" not in env or "RANK" not in env:
        return None
    try:
        world = int(env["WORLD_SIZE"])
        return Launch(
            int(env["RANK"]),
            world,
            int(env.get("LOCAL_RANK", "0")),
            int(env.get("LOCAL_WORLD_SIZE", str(world))),
        )
    except ValueError:
        raise DistributedError(
            f"RANK={env['RANK']!r} and WORLD_SIZE={env['WORLD_SIZE']!r} must be integers"
        ) from None
