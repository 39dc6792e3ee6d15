"""A split of a Parquet source streamed from disk: rows read a window of row groups at a
time, in DataLoader worker processes, and made into features with the fitted transforms.

Row groups are read whole, so an epoch reads each about once: a training epoch shuffles the
order of the split's row groups, takes them a window of `window` groups at a time, and
shuffles the split's rows within each window; the batches are cut from the windows' rows in
order, a batch spanning two windows where one ends. The group order and each window's
shuffle are drawn from the epoch's seed alone (one seed per window), so the batches do not
depend on the number of workers, and a resumed run replays them. Evaluation reads the
groups and rows in file order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import attrs
import numpy as np
import torch

from tdsl import spec as S
from tdsl.data.base import DataError, Problem, Problems
from tdsl.data.fitted import Fitted
from tdsl.data.parquet_groups import RowGroups
from tdsl.data.streaming import usable_workers
from tdsl.data.table_features import feature_tensors
from tdsl.data.table_targets import read_all_targets
from tdsl.data.tensors import Batch, Part, batch_count
from tdsl.data.worker_pool import WorkerPool


@attrs.frozen(eq=False)
class GroupReader:
    """Reads the split's rows of some row groups as one `Batch`; picklable for workers."""

    catalog: RowGroups
    labels: np.ndarray | None  # per row: its split's code (None: every row is this split's)
    code: int
    source: S.Table
    fitted: Fitted
    dtype: torch.dtype
    columns: tuple[str, ...]

    def mine(self, group: int) -> np.ndarray:
        """Positions of this split's rows in the group."""
        count = int(self.catalog.counts[group])
        if self.labels is None:
            return np.arange(count)
        start = int(self.catalog.starts[group])
        return np.flatnonzero(self.labels[start : start + count] == self.code)

    def read(self, groups: Sequence[int], seed: int | None) -> Batch:
        keep, at = [], 0
        for group in groups:
            keep.append(self.mine(group) + at)
            at += int(self.catalog.counts[group])
        rows = np.concatenate(keep)
        if seed is not None:
            order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))
            rows = rows[order.numpy()]
        table = self.catalog.read(groups, list(self.columns)).subset(rows)
        problems = Problems()
        targets = read_all_targets(self.source, {"file": table}, self.fitted, problems)[0]
        problems.check()
        states = self.fitted.state["columns"]
        missing = frozenset(self.source.missing)
        features = feature_tensors(states, [table], missing, problems, self.dtype)[0]
        problems.check()
        return Batch((features,), targets["file"])


@attrs.frozen
class _Failed:
    problem: Problem


@attrs.frozen
class _ReadWindow:
    """A worker's job: one window of row groups read (and shuffled by its seed)."""

    reader: GroupReader

    def __call__(self, item: tuple[list[int], int | None]) -> Batch | _Failed:
        try:
            return self.reader.read(*item)
        except DataError as exc:
            return _Failed(exc.problems[0])


def _take(batch: Batch, start: int, end: int) -> Batch:
    return Batch(tuple(f[start:end] for f in batch.features), batch.target[start:end])


def _join(first: Batch, second: Batch) -> Batch:
    features = tuple(torch.cat(pair) for pair in zip(first.features, second.features, strict=True))
    return Batch(features, torch.cat([first.target, second.target]))


@attrs.frozen(eq=False)
class StreamedRows:
    """One split of a streamed Parquet source (the `Rows` the training loops batch)."""

    reader: GroupReader
    groups: np.ndarray  # the row groups holding rows of this split, in file order
    count: int  # the split's rows
    window: int = 4  # row groups shuffled together
    workers: int = 0
    device: torch.device | None = None
    part: Part | None = None  # several processes: this one's share of each batch
    # The worker processes, by their number: started once, kept across epochs.
    _pools: dict[int, WorkerPool] = attrs.field(factory=dict, init=False, repr=False)

    def __len__(self) -> int:
        return self.count

    def num_batches(self, batch_size: int) -> int:
        return batch_count(self.count, batch_size, self.part)

    def plan(self, order_seed: int | None) -> tuple[list[list[int]], list[int | None]]:
        """The epoch's windows of row groups and each one's shuffle seed (None: in order)."""
        groups = [int(g) for g in self.groups]
        if order_seed is None:
            windows = [groups[i : i + self.window] for i in range(0, len(groups), self.window)]
            return windows, [None] * len(windows)
        generator = torch.Generator().manual_seed(order_seed)
        shuffled = [groups[i] for i in torch.randperm(len(groups), generator=generator)]
        windows = [shuffled[i : i + self.window] for i in range(0, len(groups), self.window)]
        seeds = torch.randint(0, 2**62, (len(windows),), generator=generator).tolist()
        return windows, seeds

    def _rows(self, order_seed: int | None) -> Iterator[Batch]:
        """The windows' rows, read ahead by the workers."""
        windows, seeds = self.plan(order_seed)
        workers = usable_workers(self.workers, len(windows))
        if workers not in self._pools:  # a window's slices are pinned too on a GPU
            self._pools[workers] = WorkerPool(_ReadWindow(self.reader), workers, self._cuda)
        for item in self._pools[workers].map(list(zip(windows, seeds, strict=True))):
            if isinstance(item, _Failed):
                raise DataError([item.problem])
            yield item

    def _cut(self, batch_size: int, order_seed: int | None) -> Iterator[Batch]:
        """Batches of `batch_size` rows (the last may be smaller) across the windows."""
        carry: Batch | None = None
        for rows in self._rows(order_seed):
            start = 0
            if carry is not None:
                start = batch_size - carry.size
                carry = _join(carry, _take(rows, 0, start))
                if carry.size < batch_size:
                    continue
                yield carry
                carry = None
            while rows.size - start >= batch_size:
                yield _take(rows, start, start + batch_size)
                start += batch_size
            if start < rows.size:
                carry = _take(rows, start, rows.size)
        if carry is not None:
            yield carry

    def batches(self, batch_size: int, order_seed: int | None = None) -> Iterator[Batch]:
        for batch in self._cut(batch_size, order_seed):
            if self.part is not None:
                share = self.part.slice(batch.size)
                if share is None:
                    continue
                batch = _take(batch, *share)
            yield batch if self.device is None else batch.to(self.device, self._cuda)

    @property
    def _cuda(self) -> bool:
        return self.device is not None and self.device.type == "cuda"

    def to(self, device: torch.device) -> StreamedRows:
        return attrs.evolve(self, device=device)
