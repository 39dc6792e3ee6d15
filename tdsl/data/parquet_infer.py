"""`columns: all` over a Parquet source streamed by row groups: each column's kind (every
present cell a number, or not) and whether it has missing cells, found a row group at a
time, as `column_inference` finds them over the whole table."""

from __future__ import annotations

import numpy as np

from tdsl import spec as S
from tdsl.data.base import Context, Problems
from tdsl.data.column_inference import infer_columns, is_number, left_out
from tdsl.data.csvfile import CsvTable
from tdsl.data.parquet_groups import RowGroups


def infer_streamed(source: S.Table, ctx: Context, problems: Problems) -> tuple[S.Column, ...]:
    """The inferred columns of the main file, reading one row group at a time."""
    catalog = RowGroups.of(ctx.path(source.file), ("file",))
    missing = frozenset(source.missing)
    names = [n for n in catalog.header if n not in left_out(source)]
    # Per column: a present cell seen, every present cell a number, a missing cell seen.
    found = {name: [False, True, False] for name in names}
    for group in range(len(catalog)):
        table = catalog.read([group], names)
        for name in names:
            seen = found[name]
            values = table.floats(name, missing)
            if values is not None:
                gaps = np.isnan(values)
                seen[0] |= not gaps.all()
                seen[2] |= bool(gaps.any())
                continue
            codes, uniques = table.codes(name)
            used = [uniques[i].strip() for i in (np.unique(codes) if len(codes) else [])]
            present = [u for u in used if u not in missing]
            seen[0] |= bool(present)
            seen[1] &= all(is_number(u) for u in present)
            seen[2] |= len(present) < len(used)
        table.release()
    kinds = {n: ("number" if s[0] and s[1] else "text", s[2]) for n, s in found.items()}
    stand_in = CsvTable.header_only(catalog.path, catalog.header)
    return infer_columns(source, stand_in, problems, kinds)
