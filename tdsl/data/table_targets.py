"""A CSV's targets: one column (`target:`), or several by name (`targets:`) that travel as
one [N, K] float tensor, a column each, so batches take them in the same index_select as one
target."""

from __future__ import annotations

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
    for name, column, kind, num_classes, where in target_columns(source):
        known = fitted_classes if name is None else (fitted_classes or {}).get(name)
        values, spec, found = read_targets(
            kind,
            num_classes,
            {k: (t.column(column), t.where) for k, t in tables.items()},
            frozenset(source.missing),
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
