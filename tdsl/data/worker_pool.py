"""DataLoader worker processes kept from one epoch to the next.

A split read from files hands its workers work items (a batch's row ids and augmentation
seed, a window of row groups) that this process computes per epoch. The items reach the
workers through the loader's sampler, which is read here at the start of every pass, so one
loader with `persistent_workers` serves every epoch: the workers start once per split instead
of once per epoch, and what each batch holds is exactly what it was with a loader per epoch.
The loader's own seed comes from a generator of its own, so reading the data draws nothing
from torch's global generator. The workers end when the split's object is freed (the
loops place a split per `fit`), and with this process in any case (they are daemons).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class _Items(Sampler):
    """The current pass's work items, as the loader's indices."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class _Work(Dataset):
    def __init__(self, work: Callable[[Any], Any]):
        self.work = work

    def __getitem__(self, item: Any) -> Any:
        return self.work(item)


def _unchanged(item: Any) -> Any:
    return item


class WorkerPool:
    """`map(items)` runs the picklable `work` on each item in worker processes (here when
    `workers` is 0), in order, reusing the same processes for every call."""

    def __init__(self, work: Callable[[Any], Any], workers: int, pin_memory: bool = False):
        self.work, self.workers, self.pin_memory = work, workers, pin_memory
        self._sampler = _Items()
        self._loader = self._make(self._sampler, persistent=workers > 0)
        self._busy = False

    def _make(self, sampler: _Items, persistent: bool) -> DataLoader:
        return DataLoader(
            _Work(self.work),
            batch_size=None,
            sampler=sampler,
            num_workers=self.workers,
            collate_fn=_unchanged,
            pin_memory=self.pin_memory,
            persistent_workers=persistent,
            generator=torch.Generator().manual_seed(0),
        )

    def map(self, items: list[Any]) -> Iterator[Any]:
        if self._busy:  # a pass still under way (two at once): this one gets its own workers
            sampler = _Items()
            sampler.items = items
            yield from self._make(sampler, persistent=False)
            return
        self._busy = True
        try:
            self._sampler.items = items
            yield from self._loader
        finally:
            self._busy = False
