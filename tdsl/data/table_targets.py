"""A CSV's targets: one column (`target:`), or several by name (`targets:`) that travel as
one [N, K] float tensor, a column each, so batches take them in the same index_select as one
target."""

from __future__ import annotations

import numpy as np
import torch

from tdsl import spec as S
from tdsl.data.base import Problems
from tdsl.data.csvfile import CsvTable
from tdsl.data.labels import read_targets


def target_columns(source: S.Table) -> list[tuple[str | None, str, str, int | None, tuple]]:
    """(name, column, kind, num_classes, spec path) per target; one unnamed with `target:`."""
    if not source.targets:
        return [(None, source.target, source.target_kind, source.num_classes, ("target",))]
    return [
        (name, t.column, t.kind, t.num_classes, ("targets", name, "column"))
        for name, t in source.targets.items()
    ]


def target_problems(source: S.Table, problems: Problems) -> None:
    if source.targets:
        for key in ("target", "target_kind", "num_classes"):
            if getattr(source, key) is not None:
                problems.add(
                    (key,),
                    f"{key} is for one target, and this table names several under targets:",
                    f"remove {key}, or targets:",
                )
        for name, target in source.targets.items():
            if target.num_classes is not None and target.kind != "class":
                where = ("targets", name, "num_classes")
                problems.add(where, "num_classes applies to class targets")
        return
    if source.target is None:
        problems.add(
            (), "a csv source needs a target", "target: COLUMN with target_kind:, or targets:"
        )
    elif source.target_kind is None:
        problems.add((), "missing required key 'target_kind' in csv", "binary, class or regression")


def read_all_targets(source: S.Table, tables: dict[str, CsvTable], fitted, problems: Problems):
    """Targets per file key, the (first) target's spec, class names, and with `targets:` each
    target's spec by name; several targets share one [N, K] float tensor, a column each, so
    batches take them in the same index_select as one target."""
    fitted_classes = None if fitted is None else fitted.state.get("classes")
    per_target, specs, classes = [], {}, {}
    missing = frozenset(source.missing)
    for name, column, kind, num_classes, where in target_columns(source):
        known = fitted_classes if name is None else (fitted_classes or {}).get(name)
        fast = _number_targets(kind, num_classes, tables, column, missing, known)
        if fast is not None:
            values, spec, found = fast
        else:
            values, spec, found = read_targets(
                kind,
                num_classes,
                {k: (t.column(column), t.where) for k, t in tables.items()},
                missing,
                known,
                problems,
                where=where,
                fitted=fitted is not None,
            )
        per_target.append(values)
        specs[name] = spec
        classes[name] = found
    if not source.targets:
        return per_target[0], specs[None], classes[None], None
    if problems.items:
        return {}, next(iter(specs.values())), classes, specs
    joined = {
        key: torch.stack([t[key].reshape(-1).float() for t in per_target], dim=1)
        for key in per_target[0]
    }
    return joined, next(iter(specs.values())), classes, specs


def _number_targets(kind, num_classes, tables: dict[str, CsvTable], column, missing, known):
    """Targets straight from number columns Arrow read, when every cell is present and
    valid for `kind` (integers for classes without named labels); None: read them cell by
    cell, which also says what is wrong."""
    if kind == "class" and known is not None:
        return None
    columns = {key: table.floats(column, missing) for key, table in tables.items()}
    if any(v is None or np.isnan(v).any() for v in columns.values()):
        return None
    out = {}
    for key, values in columns.items():
        if kind == "binary" and not np.isin(values, (0.0, 1.0)).all():
            return None
        if kind == "class":
            if not ((values >= 0) & (values == np.floor(values))).all():
                return None
            out[key] = torch.from_numpy(values.astype(np.int64))
        else:
            out[key] = torch.from_numpy(values.astype(np.float32)).reshape(-1, 1)
    if kind != "class":
        return out, S.Target(kind=kind), None
    found = max((int(v.max()) for v in columns.values() if len(v)), default=-1) + 1
    if num_classes is not None and found > num_classes:
        return None  # too many classes: said by the cell-by-cell reading
    return out, S.Target(kind="class", num_classes=num_classes or found), None
