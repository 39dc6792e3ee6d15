"""A spec whose sections convert on their own: a mistake in one section leaves the others.

`structure_spec` gives a `Spec` only when every key of every section is right. For
validation that is too little: a typo in `train` would hide every model and data check.
`structure_sections` reports the same problems, and also gives the spec made of the
sections that did convert, with each broken section (or missing required one) set to None,
and the names of those sections, so the checks that read them can be skipped.
"""

from __future__ import annotations

import difflib
from typing import Any

import attrs

from tdsl import spec as S
from tdsl.errors import Diagnostic
from tdsl.spec.convert import CONVERTER, structure_spec
from tdsl.spec.value_hooks import Invalid

SECTIONS = {f.name: f for f in attrs.fields(S.Spec) if not f.metadata.get("internal")}


@attrs.frozen
class Sections:
    """The outcome of structuring: the spec (sections that failed are None), every problem,
    and which sections failed. `spec` is None only where the data is not a mapping."""

    spec: S.Spec | None
    problems: list[Diagnostic]
    broken: frozenset[str] = frozenset()


def structure_sections(data: Any) -> Sections:
    """Plain data -> the spec, section by section (see the module's docstring)."""
    try:
        return Sections(structure_spec(data), [])
    except Invalid as exc:
        problems = exc.problems  # the whole spec's problems, as `load` reports them
    if not isinstance(data, dict):
        return Sections(None, problems)
    values: dict[str, Any] = {}
    broken: set[str] = set()
    for name, field in SECTIONS.items():
        if name not in data:
            if field.default is attrs.NOTHING:
                broken.add(name)
            continue
        try:
            values[name] = CONVERTER.structure(data[name], field.type)
            if field.validator is not None:
                field.validator(None, field, values[name])
        except (Invalid, ValueError, TypeError):
            broken.add(name)
    # `trian:` was meant as `train`: the train the checks would see is not the one written.
    for key in data:
        if key not in SECTIONS:
            broken.update(difflib.get_close_matches(str(key), list(SECTIONS), n=1, cutoff=0.75))
    placeholders = {
        name: field.default if field.default is not attrs.NOTHING else None
        for name, field in SECTIONS.items()
        if name in broken
    }
    spec = S.Spec(**{**placeholders, **{k: v for k, v in values.items() if k not in broken}})
    for name in broken - {"seed"}:  # the seed only orders data the checks read: default
        # Absent, not defaulted: a check that reads a broken section must be skipped,
        # and one that does not would fail loudly here rather than check a default.
        object.__setattr__(spec, name, None)
    return Sections(spec, problems, frozenset(broken))
