"""A table's feature matrices, made a column at a time: each column's transformed values are
written into blocks of rows laid out [features, rows] (a column's values contiguous in each
block), and the table's column is let go of once every split has its values, so the table
shrinks as the features grow. At the end each block is turned [rows, features] into the
final matrix and freed at once, so the two layouts are never held whole together.
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence

import attrs
import numpy as np
import torch

from tdsl.data import csvfile
from tdsl.data.base import Problems
from tdsl.data.csvfile import CsvTable
from tdsl.data.table_fit import output_names

# Rows per block: about this many bytes each (the most held twice while the features are
# turned [rows, features] at the end).
BLOCK_BYTES = 8 << 20
NUMBER_HINT = "use transform: onehot for a column of categories"


@attrs.frozen
class ColumnValues:
    """One column's transformed values, per row: a number (float64), or a one-hot position
    (-1: no position), and the missing indicator when the column has one."""

    numbers: np.ndarray | None = None
    positions: np.ndarray | None = None
    onehot_width: int = 0
    indicator: np.ndarray | None = None


def column_values(
    state: dict,
    table: CsvTable,
    missing: frozenset,
    where,
    problems: Problems,
    given: np.ndarray | None = None,
) -> ColumnValues:
    """The column transformed by its fitted `state`; `given`: the column's numbers for these
    rows (NaN where missing) when the caller has them already, overwritten here."""
    name, transform = state["name"], state["transform"]
    if transform == "onehot":
        categories = {c: i for i, c in enumerate(state["categories"])}
        width = len(categories) + bool(state["unknown"])
        other = width - 1 if state["unknown"] else -1
        codes, uniques = table.codes(name)
        # Per distinct text its one-hot position (a missing one: unknown, or none), then
        # per row by its code: no Python work per row.
        gone = np.array([u.strip() in missing for u in uniques], dtype=bool)
        position = np.array([categories.get(u.strip(), other) for u in uniques], dtype=np.int64)
        position[gone] = other
        per_row = position[codes] if len(uniques) else np.full(len(codes), other, np.int64)
        absent = None
        if state["indicator"]:
            absent = gone[codes] if len(uniques) else np.zeros(len(codes), dtype=bool)
        return ColumnValues(positions=per_row, onehot_width=width, indicator=absent)
    fast = given if given is not None else table.floats(name, missing)
    absent = np.isnan(fast) if fast is not None else table.absent(name, missing)
    indicator = absent if state["indicator"] else None
    if transform == "missing":
        return ColumnValues(indicator=indicator)
    values, ours = fast, given is not None
    if values is None:
        values, ours = csvfile.numbers(table, name, where, missing, problems, NUMBER_HINT), True
    gaps = absent.any()
    if state["fill"] is None and gaps:
        first = int(np.flatnonzero(absent)[0])
        problems.add(
            where,
            f"column {name!r} has {int(absent.sum())} missing cells "
            f"(the first on {table.where(first)})",
            "set fill: value, mean or median",
        )
    # In place where the values are ours to change, else into one new array.
    if gaps:
        if not ours:
            values, ours = values.copy(), True
        values[absent] = state["fill"] or 0.0
    shift, scale = {"standardize": ("mean", "std"), "minmax": ("min", "range")}.get(
        transform, (None, None)
    )
    if shift is not None:
        values = np.subtract(values, state[shift], out=values if ours else None)
        values /= state[scale]
    return ColumnValues(numbers=values, indicator=indicator)


class FeatureWriter:
    """Feature matrices of `tables` (the splits), `width` features each, written column by
    column (`write`) and collected (`finish`) in `dtype`."""

    def __init__(self, tables: Sequence[CsvTable], width: int, dtype: torch.dtype):
        # numpy has no bfloat16 or the like: those are filled in float32, then converted.
        work = np.float64 if dtype == torch.float64 else np.float32
        self.tables, self.width, self.dtype = list(tables), width, dtype
        per_block = max(1, BLOCK_BYTES // max(1, width * np.dtype(work).itemsize))
        self.blocks = [
            [
                _block(width, min(per_block, len(t) - start), work)
                for start in range(0, len(t), per_block)
            ]
            for t in self.tables
        ]
        self.start = 0

    def write(
        self,
        state: dict,
        missing: frozenset,
        where,
        problems: Problems,
        given: Sequence[np.ndarray] | None = None,
    ) -> None:
        """The column's features in every table (`given`: each table's numbers, when the
        caller has them; they are overwritten), then the column let go of."""
        for index, (table, blocks) in enumerate(zip(self.tables, self.blocks, strict=True)):
            values = None if given is None else given[index]
            found = column_values(state, table, missing, where, problems, values)
            _scatter(blocks, self.start, found)
            del found, values  # each table's transformed values go once they are written
        for table in self.tables:
            table.forget(state["name"])
        self.start += len(output_names(state))

    def finish(self) -> list[torch.Tensor]:
        """Each table's [rows, features] matrix, a block at a time."""
        made = []
        for blocks in self.blocks:
            rows = sum(block.shape[1] for block in blocks)
            out = torch.empty((rows, self.width), dtype=self.dtype)
            at = 0
            while blocks:  # each block freed as soon as it is copied
                block = torch.from_numpy(blocks.pop(0))
                out[at : at + block.shape[1]] = block.t()
                at += block.shape[1]
                del block
            made.append(out)
        self.blocks = []
        return made


def _block(width: int, rows: int, dtype) -> np.ndarray:
    """An empty [width, rows] array in memory of its own: an anonymous map, which goes back
    to the system when the array is freed (malloc may keep a freed block for reuse), and
    whose pages cost nothing until written."""
    size = width * rows * np.dtype(dtype).itemsize
    if size == 0:
        return np.empty((width, rows), dtype=dtype)
    return np.frombuffer(mmap.mmap(-1, size), dtype=dtype).reshape(width, rows)


def _scatter(blocks: list[np.ndarray], start: int, found: ColumnValues) -> None:
    at = 0
    for block in blocks:
        rows = slice(at, at + block.shape[1])
        row = start
        if found.positions is not None:
            part = block[row : row + found.onehot_width]
            part[...] = 0
            positions = found.positions[rows]
            hot = np.flatnonzero(positions >= 0)
            part[positions[hot], hot] = 1
            row += found.onehot_width
        elif found.numbers is not None:
            block[row] = found.numbers[rows]
            row += 1
        if found.indicator is not None:
            block[row] = found.indicator[rows]
        at += block.shape[1]


def feature_tensors(
    states: Sequence[dict],
    tables: Sequence[CsvTable],
    missing: frozenset,
    problems: Problems,
    dtype: torch.dtype,
) -> list[torch.Tensor]:
    """Each table's feature matrix in `dtype`, by fitted `states`."""
    width = sum(len(output_names(state)) for state in states)
    writer = FeatureWriter(tables, width, dtype)
    for index, state in enumerate(states):
        writer.write(state, missing, ("columns", index), problems)
    return writer.finish()
