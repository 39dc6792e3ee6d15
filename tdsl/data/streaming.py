"""Rows read from files as batches are drawn: a map-style Dataset whose items are whole
batches, loaded by DataLoader worker processes.

The batch order is the same permutation `TensorData` draws, and each batch's augmentation
seed depends only on (epoch seed, batch number), so the rows and their augmentations do not
depend on the number of workers and a resumed run replays them. The workers are kept from
one epoch to the next (`worker_pool`). A row that cannot be read
comes back from the worker as a message and is raised here as a one-line `DataError`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Protocol

import attrs
import numpy as np
import torch
from torch.utils.data import get_worker_info

from tdsl.data.base import DataError, Problem
from tdsl.data.tensors import Batch, Part, batch_count, epoch_order
from tdsl.data.worker_pool import WorkerPool


class RowReader(Protocol):
    """Reads rows by index; picklable, so worker processes get their own copy."""

    def __len__(self) -> int: ...
    def read(self, index: np.ndarray, augment_seed: int | None) -> Batch: ...


@attrs.frozen
class _Failed:
    problem: Problem


@attrs.frozen
class _ReadBatch:
    """A worker's job: one batch's rows (and augmentation seed) read; picklable."""

    reader: RowReader

    def __call__(self, item: tuple[np.ndarray, int | None]) -> Batch | _Failed:
        try:
            return self.reader.read(*item)
        except DataError as exc:
            return _Failed(exc.problems[0])


def batch_tensor(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialized tensor for a batch, in shared memory when this is a DataLoader
    worker, so that sending it to the training process moves no pixels (a tensor in
    ordinary memory is copied into shared memory as it is sent); DataLoader's own collate
    allocates its batches the same way."""
    if get_worker_info() is None or math.prod(shape) == 0:
        return torch.empty(shape, dtype=dtype)
    elem = torch.empty(0, dtype=dtype)
    storage = elem._typed_storage()._new_shared(math.prod(shape), device=elem.device)
    return elem.new(storage).view(shape)


def usable_workers(wanted: int, batches: int) -> int:
    """No more workers than batches or than the CPUs this process may use (DataLoader warns
    beyond those)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(0, min(wanted, batches, cpus))


@attrs.frozen(eq=False)
class FileData:
    """One split of a file-backed source: row ids into `reader`, read per batch."""

    reader: RowReader
    index: np.ndarray  # this split's row ids in the reader
    workers: int = 0
    augment: bool = False  # draw augmentations for shuffled (training) batches
    device: torch.device | None = None
    part: Part | None = None  # several processes: this one's share of each batch
    # The worker processes, by their number: started once, kept across epochs.
    _pools: dict[int, WorkerPool] = attrs.field(factory=dict, init=False, repr=False)

    def __len__(self) -> int:
        return len(self.index)

    def num_batches(self, batch_size: int) -> int:
        return batch_count(len(self), batch_size, self.part)

    def batches(self, batch_size: int, order_seed: int | None = None) -> Iterator[Batch]:
        order = epoch_order(len(self), order_seed)
        rows = self.index if order is None else self.index[order.numpy()]
        augment = self.augment and order_seed is not None
        chunks, seeds = [], []
        for number, start in enumerate(range(0, len(rows), batch_size)):
            chunk = rows[start : start + batch_size]
            if self.part is not None:
                share = self.part.slice(len(chunk))
                if share is None:
                    continue
                chunk = chunk[share[0] : share[1]]
            chunks.append(chunk)
            seeds.append(self._augment_seed(order_seed, number) if augment else None)
        workers = usable_workers(self.workers, len(chunks))
        cuda = self.device is not None and self.device.type == "cuda"
        if workers not in self._pools:
            self._pools[workers] = WorkerPool(_ReadBatch(self.reader), workers, pin_memory=cuda)
        for item in self._pools[workers].map(list(zip(chunks, seeds, strict=True))):
            if isinstance(item, _Failed):
                raise DataError([item.problem])
            yield item if self.device is None else item.to(self.device, non_blocking=cuda)

    def _augment_seed(self, order_seed: int, number: int) -> int:
        # Non-negative, as numpy's seeding wants, whatever the spec's seed; each process
        # draws its own augmentations for its share of a batch.
        seed = order_seed * 100_003 + number
        if self.part is not None:
            seed = seed * self.part.world + self.part.rank
        return seed % 2**63

    def to(self, device: torch.device) -> FileData:
        return attrs.evolve(self, device=device)

    def subset(self, index: np.ndarray) -> FileData:
        return attrs.evolve(self, index=self.index[index])
