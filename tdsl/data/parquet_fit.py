"""Fitting a table's column transforms one row group at a time, in bounded memory: what a
Parquet source streamed from disk fits, equal to `table_fit.fit_column` on the same rows
(up to float rounding in the mean and standard deviation).

Per number column a group adds its present values' count, mean and sum of squared
deviations (merged by Chan's formula), its minimum and maximum, and its missing cells; the
filled column's statistics follow from those and the fill value. A median (`fill: median`)
is the exact order statistic: four more passes over the column narrow a histogram of its
values' bit patterns, 16 bits at a time, to the middle value(s).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tdsl import spec as S
from tdsl.data.table_fit import common_state, scaled_state

_WIDTH = 16  # bits per median pass: a 65,536-bucket histogram
_SIGN = np.uint64(1 << 63)


class NumberStats:
    """Running statistics of one number column's cells (NaN: missing)."""

    def __init__(self) -> None:
        self.count, self.mean, self.squares = 0, 0.0, 0.0
        self.low, self.high, self.gaps = np.inf, -np.inf, 0

    def add(self, values: np.ndarray) -> None:
        present = values[~np.isnan(values)]
        self.gaps += len(values) - len(present)
        if not len(present):
            return
        mean = float(present.mean())
        squares = float(np.square(present - mean).sum())
        self.merge(len(present), mean, squares)
        self.low, self.high = min(self.low, float(present.min())), max(self.high, present.max())

    def merge(self, count: int, mean: float, squares: float) -> None:
        total = self.count + count
        delta = mean - self.mean
        self.mean += delta * count / total
        self.squares += squares + delta * delta * self.count * count / total
        self.count = total


def _keys(values: np.ndarray) -> np.ndarray:
    """Unsigned integers in the order of the (finite) floats: the sign bit flipped for
    positive values, every bit for negative ones."""
    bits = values.view(np.uint64)
    return np.where(bits & _SIGN, ~bits, bits | _SIGN)


def _value(key: int) -> float:
    bits = np.uint64(key)
    bits = bits ^ _SIGN if bits & _SIGN else ~bits
    return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])


class Median:
    """The median of a column's present values, found over `passes` reads of them."""

    passes = 64 // _WIDTH

    def __init__(self, count: int):
        self.ranks = sorted({(count - 1) // 2, count // 2})
        self.prefixes = [0] * len(self.ranks)
        self.level = 0
        self._fresh()

    def _fresh(self) -> None:
        self.counts = [np.zeros(1 << _WIDTH, dtype=np.int64) for _ in self.ranks]

    def add(self, values: np.ndarray) -> None:
        keys = _keys(values[~np.isnan(values)])
        done = self.level * _WIDTH
        for counts, prefix in zip(self.counts, self.prefixes, strict=True):
            inside = keys if done == 0 else keys[(keys >> np.uint64(64 - done)) == prefix]
            buckets = (inside >> np.uint64(64 - done - _WIDTH)) & np.uint64((1 << _WIDTH) - 1)
            counts += np.bincount(buckets.astype(np.int64), minlength=1 << _WIDTH)

    def advance(self) -> None:
        """After a pass: each rank's bucket becomes the prefix the next pass narrows."""
        for at, counts in enumerate(self.counts):
            running = np.cumsum(counts)
            bucket = int(np.searchsorted(running, self.ranks[at], side="right"))
            self.ranks[at] -= int(running[bucket - 1]) if bucket else 0
            self.prefixes[at] = (self.prefixes[at] << _WIDTH) | bucket
        self.level += 1
        self._fresh()

    def value(self) -> float:
        values = [_value(p) for p in self.prefixes]
        return values[0] if len(values) == 1 else (values[0] + values[1]) / 2


def fill_value(column: S.Column, stats: NumberStats, median: Median | None) -> float | None:
    """The fill of the column's missing cells (None: none, or no numbers to take it of)."""
    if column.fill is None or (column.fill in ("mean", "median") and not stats.count):
        return None
    if column.fill == "value":
        return column.fill_value
    if column.fill == "mean":
        return float(stats.mean)
    assert median is not None
    return median.value()


def column_state(
    column: S.Column, categories: set[str] | None, stats: NumberStats | None, fill: float | None
) -> dict[str, Any]:
    """The state `table_fit.fit_column` makes, from a streamed pass's findings."""
    state = common_state(column, categories)
    if column.transform in ("onehot", "missing"):
        return state
    assert stats is not None
    state["fill"] = fill
    # The filled column: the present values and `gaps` copies of the fill (0 without one).
    filled = NumberStats()
    filled.count, filled.mean, filled.squares = stats.count, stats.mean, stats.squares
    filled.low, filled.high = stats.low, stats.high
    if stats.gaps:
        value = fill if fill is not None else 0.0
        filled.merge(stats.gaps, value, 0.0)
        filled.low, filled.high = min(filled.low, value), max(filled.high, value)

    def moments() -> tuple[float, float]:
        return float(filled.mean), float(np.sqrt(max(filled.squares, 0.0) / filled.count))

    def bounds() -> tuple[float, float]:
        return float(filled.low), float(filled.high)

    return scaled_state(state, filled.count, moments, bounds)
