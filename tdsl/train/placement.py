"""Where a split's in-memory rows live while a run trains on a GPU.

Rows that fit go to the device once, so a step's batch is an `index_select` there with no
host-to-device copy at all. Rows that would take more than `DEVICE_SHARE` of the GPU's free
memory stay on the host instead, and each batch is gathered there, copied into page-locked
(pinned) memory and sent with `non_blocking=True`, so the copy overlaps the work already
queued on the GPU. Rows read from files (`FileData`) pin and copy in their DataLoader.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import torch

from tdsl.data import Batch, TensorData

# The share of a GPU's free memory in-memory rows may take; the rest is for the model, its
# optimizer state and activations.
DEVICE_SHARE = 0.5


@attrs.frozen
class HostRows:
    """In-memory rows kept on the host, each batch sent to `device` asynchronously."""

    rows: TensorData
    device: torch.device

    def __len__(self) -> int:
        return len(self.rows)

    def num_batches(self, batch_size: int) -> int:
        return self.rows.num_batches(batch_size)

    def batches(self, batch_size: int, order_seed: int | None = None) -> Iterator[Batch]:
        for batch in self.rows.batches(batch_size, order_seed):
            yield batch.pin_memory().to(self.device, non_blocking=True)

    def to(self, device: torch.device) -> Any:
        return self if device == self.device else self.rows.to(device)


def nbytes(rows: TensorData) -> int:
    return sum(t.numel() * t.element_size() for t in (*rows.features, rows.target))


def place(rows: Any, device: torch.device) -> Any:
    """`rows` ready to batch for a step on `device` (see the module's docstring)."""
    if device.type != "cuda" or not isinstance(rows, TensorData):
        return rows.to(device)
    if all(t.device == device for t in (*rows.features, rows.target)):
        return rows
    free, _total = torch.cuda.mem_get_info(device)
    if nbytes(rows) <= DEVICE_SHARE * free:
        return rows.to(device)
    return HostRows(rows.to(torch.device("cpu")), device)
