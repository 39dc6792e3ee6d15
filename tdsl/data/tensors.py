"""Rows in memory and the fast batching path over them, plus the seeded splits every source
uses.

`TensorData` batches by one permutation per epoch and `index_select` — no per-sample
collate. The permutation depends only on the epoch's seed, which is what lets a resumed run
replay the same batch order.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Protocol

import attrs
import torch

from tdsl import spec as S


@attrs.frozen
class Batch:
    features: tuple[torch.Tensor, ...]
    target: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.target.shape[0])

    def to(self, device: torch.device, non_blocking: bool = False) -> Batch:
        return Batch(
            tuple(f.to(device, non_blocking=non_blocking) for f in self.features),
            self.target.to(device, non_blocking=non_blocking),
        )

    def pin_memory(self) -> Batch:
        """Page-locked copies, for faster copies to a GPU (DataLoader calls this)."""
        return Batch(tuple(f.pin_memory() for f in self.features), self.target.pin_memory())


class Rows(Protocol):
    """What the loops need of a split: in memory (`TensorData`) or read from files."""

    def __len__(self) -> int: ...
    def num_batches(self, batch_size: int) -> int: ...
    def batches(self, batch_size: int, order_seed: int | None = None) -> Iterator[Batch]: ...
    def to(self, device: torch.device) -> Rows: ...


@attrs.frozen
class Part:
    """One process's share of every batch when several processes train together: the
    `rank`-th of `world` contiguous slices, whose sizes differ by at most one row. Every
    training step involves all processes, so in training a batch with fewer rows than
    processes is left out everywhere; in evaluation a process just skips an empty slice."""

    rank: int
    world: int
    training: bool = True

    def slice(self, rows: int) -> tuple[int, int] | None:
        """This process's [start, end) within a batch of `rows` rows; None: nothing to do."""
        if self.training and rows < self.world:
            return None
        base, extra = divmod(rows, self.world)
        start = self.rank * base + min(self.rank, extra)
        end = start + base + (self.rank < extra)
        return (start, end) if end > start else None

    def batch_count(self, n: int, batch_size: int) -> int:
        full, rest = divmod(n, batch_size)
        count = full if self.slice(batch_size) is not None else 0
        return count + (rest > 0 and self.slice(rest) is not None)


def batch_count(n: int, batch_size: int, part: Part | None) -> int:
    return math.ceil(n / batch_size) if part is None else part.batch_count(n, batch_size)


def epoch_order(n: int, order_seed: int | None) -> torch.Tensor | None:
    """The permutation of an epoch (None: row order)."""
    if order_seed is None:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(order_seed))


@attrs.frozen
class TensorData:
    """Rows held in memory: one permutation per epoch, batches by index_select."""

    features: tuple[torch.Tensor, ...]
    target: torch.Tensor
    # Several processes: this one's share of each batch (`len` still counts every row).
    part: Part | None = None

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def num_batches(self, batch_size: int) -> int:
        return batch_count(len(self), batch_size, self.part)

    def batches(self, batch_size: int, order_seed: int | None = None) -> Iterator[Batch]:
        """Batches in row order, or shuffled by a permutation drawn from `order_seed`."""
        n = len(self)
        order = epoch_order(n, order_seed)
        for start in range(0, n, batch_size):
            end = min(start + batch_size, n)
            if self.part is not None:
                share = self.part.slice(end - start)
                if share is None:
                    continue
                start, end = start + share[0], start + share[1]
            if order is None:
                yield Batch(tuple(f[start:end] for f in self.features), self.target[start:end])
                continue
            index = order[start:end]
            yield Batch(
                tuple([f.index_select(0, index) for f in self.features]),
                self.target.index_select(0, index),
            )

    def subset(self, index: torch.Tensor) -> TensorData:
        return attrs.evolve(
            self, features=tuple(f[index] for f in self.features), target=self.target[index]
        )

    def to(self, device: torch.device) -> TensorData:
        return attrs.evolve(
            self, features=tuple(f.to(device) for f in self.features), target=self.target.to(device)
        )


@attrs.frozen
class Splits:
    """A source's rows by split, and the transforms fitted on the training rows (None for
    sources with nothing to fit); `tdsl run` keeps those in the run directory."""

    train: Any  # TensorData, or FileData for rows read from files as batches are drawn
    val: Any | None
    test: Any | None
    fitted: Any | None = None  # tdsl.data.fitted.Fitted


@attrs.frozen
class SplitIndex:
    train: torch.Tensor
    val: torch.Tensor | None
    test: torch.Tensor | None


def _plan(split: S.Split, own_files: tuple[bool, bool]) -> tuple[list[float], bool]:
    """The fractions the main rows are divided by (a split with its own file takes none,
    the others share the rows in proportion), and whether test takes what rounding leaves."""
    fractions = [split.train, 0.0 if own_files[0] else split.val]
    fractions.append(0.0 if own_files[1] else split.test)
    total = sum(fractions)
    if any(own_files) and total > 0:
        fractions = [f / total for f in fractions]
    return fractions, split.test > 0 and not own_files[1]


def split_index(
    n: int,
    split: S.Split,
    generator: torch.Generator,
    strata: torch.Tensor | None = None,
    own_files: tuple[bool, bool] = (False, False),
) -> SplitIndex:
    """Row indices per split from one seeded permutation. With `strata` (class labels), each
    class is divided on its own so every split keeps the class ratios. A split with its own
    file (`own_files` for val, test) takes no rows here; the others share them in proportion
    to their fractions."""
    fractions, keep_rest = _plan(split, own_files)
    order = torch.randperm(n, generator=generator)
    if strata is None or n == 0:  # no rows: no classes to divide
        parts = _divide(order, fractions, keep_rest)
    else:
        groups = [order[strata[order] == value] for value in torch.unique(strata)]
        pieces = [_divide(g, fractions, keep_rest) for g in groups]
        # Interleave the classes again: sort each split by position in the permutation.
        rank = torch.empty(n, dtype=torch.long)
        rank[order] = torch.arange(n)
        parts = []
        for which in range(3):
            index = torch.cat([p[which] for p in pieces])
            parts.append(index[torch.argsort(rank[index])])
    train, val, test = parts
    return SplitIndex(
        train,
        val if fractions[1] > 0 and len(val) else None,
        test if fractions[2] > 0 and len(test) else None,
    )


def split_sizes(
    n: int,
    split: S.Split,
    own_files: tuple[bool, bool] = (False, False),
    classes: tuple[int, ...] | None = None,
) -> dict[str, int]:
    """How many of `n` rows `split_index` gives each split in use (one drawing no rows
    included, as 0), without drawing anything. `classes`: the class sizes of a stratified
    split (they add up to `n`)."""
    fractions, keep_rest = _plan(split, own_files)
    totals = [0, 0, 0]
    for size in classes if classes is not None else (n,):
        for which, count in enumerate(_sizes(size, fractions, keep_rest)):
            totals[which] += count
    names = ("train", "val", "test")
    return {names[i]: totals[i] for i in range(3) if i == 0 or fractions[i] > 0}


def _sizes(n: int, fractions: list[float], keep_rest: bool) -> tuple[int, int, int]:
    """Train, val and test counts; rows left over by rounding go to the last split in use."""
    n_train = round(fractions[0] * n)
    n_val = round(fractions[1] * n) if keep_rest or not fractions[1] else n - n_train
    return n_train, n_val, max(0, n - n_train - n_val) if keep_rest else 0


def _divide(order: torch.Tensor, fractions: list[float], keep_rest: bool) -> list[torch.Tensor]:
    n_train, n_val, n_test = _sizes(len(order), fractions, keep_rest)
    return [
        order[:n_train],
        order[n_train : n_train + n_val],
        order[n_train + n_val : n_train + n_val + n_test],
    ]


def ordered_split(n: int, split: S.Split) -> SplitIndex:
    """The same division over rows in order (time series: train first, then val, test)."""
    train, val, test = _divide(
        torch.arange(n), [split.train, split.val, split.test], split.test > 0
    )
    return SplitIndex(train, val if len(val) else None, test if len(test) else None)


def split_rows(rows: TensorData, index: SplitIndex) -> tuple[TensorData, ...]:
    return tuple(
        None if i is None else rows.subset(i) for i in (index.train, index.val, index.test)
    )
