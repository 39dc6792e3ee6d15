"""A column's type across the files of a Parquet folder, from their footers alone.

Files written in pieces often disagree on a column's type: pandas writes an integer column
with a missing cell as double, a column of only missing cells as null, a text column as
string or dictionary. Types that read the same here are unified: every number type
(integers of any width, floats, booleans) is read as float64 anyway, any text type
(string, large_string, dictionary of strings) as text, and null is only missing cells. A
number in one file and text (or a date) in another is refused, naming the column, the two
files and their types, before a row is read: Arrow would fail part way with its own words.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from tdsl.data.base import DataError, Problem
from tdsl.errors import SpecPath


def _kind(kind: pa.DataType) -> str:
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        return "number"
    if pa.types.is_dictionary(kind):
        return _kind(kind.value_type) if _kind(kind.value_type) == "text" else str(kind)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "text"
    return "null" if pa.types.is_null(kind) else str(kind)


def _together(kinds: list[pa.DataType]) -> pa.DataType:
    """One type for types of one kind (nulls left out): the type itself when all agree."""
    if all(k == kinds[0] for k in kinds):
        return kinds[0]
    if _kind(kinds[0]) == "number":
        return pa.float64()
    return pa.large_string() if any(map(pa.types.is_large_string, kinds)) else pa.string()


def read_types(
    files: Sequence[Path], schemas: Sequence[pa.Schema], names: Sequence[str], where: SpecPath
) -> dict[str, pa.DataType]:
    """The type each of `names` is read as, across `files` (their `schemas`); raises
    `DataError` for a column that is a number in one file and text in another, and the like."""
    types: dict[str, pa.DataType] = {}
    problems = []
    for name in names:
        seen = [
            (file, schema.field(name).type) for file, schema in zip(files, schemas, strict=True)
        ]
        present = [(file, kind) for file, kind in seen if _kind(kind) != "null"]
        if not present:
            types[name] = seen[0][1]
            continue
        first_file, first = present[0]
        other = next(((f, k) for f, k in present if _kind(k) != _kind(first)), None)
        if other is None:
            types[name] = _together([kind for _, kind in present])
            continue
        problems.append(
            Problem(
                tuple(where),
                f"column {name!r} is {first} in {first_file} and {other[1]} in {other[0]}",
                "write the column with one type in every file of the folder "
                "(numbers of any width and precision mix; numbers and text do not)",
            )
        )
    if problems:
        raise DataError(problems)
    return types
