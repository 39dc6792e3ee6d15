"""Where spec objects built in Python were written: the caller's file and line, recorded as
each object is constructed, so a diagnostic about `model.layers[2].out_features` points at
the line that built that layer.

Kept in a side table keyed by object id (an entry goes when its object does), never in the
objects themselves: equality, hashing and dumps do not see it. Objects made by tdsl itself
(defaults, YAML loading through cattrs) are not recorded.
"""

from __future__ import annotations

import os
import sys
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attr
import attrs

from tdsl.errors import Diagnostic, Location, SpecPath

_ORIGINS: dict[int, tuple[str, int, Any]] = {}
_TDSL = str(Path(__file__).resolve().parents[1]) + os.sep
_HERE = Path(__file__).resolve().parent
# The spec classes' own modules (constructors, converters): the walk goes past them.
_CLASSES = {
    str(_HERE / f"{name}.py")
    for name in (
        "origins",
        "data_section",
        "file_sources",
        "model_section",
        "objective_section",
        "training_section",
        "experiment",
        "arrays_source",
        "values",
        "frozen",
    )
}
# attrs' own code (`attrs.evolve`) stands between a constructor and whoever called it.
_ATTRS = tuple(str(Path(m.__file__).resolve().parent) + os.sep for m in (attr, attrs))


def _forget(key: int) -> None:
    _ORIGINS.pop(key, None)


def record(obj: Any) -> None:
    """Remember the line of user code that constructed `obj` (called by the spec classes)."""
    frame = sys._getframe(2)  # past record() and __attrs_post_init__
    while frame is not None:
        name = frame.f_code.co_filename
        if name not in _CLASSES and not name.startswith(("<attrs generated", *_ATTRS)):
            break
        frame = frame.f_back
    if frame is None:
        return
    name = frame.f_code.co_filename
    if name.startswith(_TDSL) or f"{os.sep}cattrs{os.sep}" in name:
        return  # built by tdsl (loading YAML, storing a run): no user line to point at
    key = id(obj)
    # The weak reference (kept with the entry) drops the entry when `obj` goes.
    _ORIGINS[key] = (name, frame.f_lineno, weakref.ref(obj, lambda _, key=key: _forget(key)))


def origin(obj: Any) -> tuple[str, int] | None:
    found = _ORIGINS.get(id(obj))
    return (found[0], found[1]) if found is not None and found[2]() is obj else None


class Recorded:
    """Base of the spec classes: records where user code constructed each object."""

    __slots__ = ()

    def __attrs_post_init__(self) -> None:
        record(self)


def _child(obj: Any, part: Any) -> Any:
    if isinstance(part, int) and isinstance(obj, tuple | list):
        return obj[part] if -len(obj) <= part < len(obj) else None
    if isinstance(obj, Mapping):
        return obj.get(part)
    if isinstance(part, str) and attrs.has(type(obj)):
        if part in attrs.fields_dict(type(obj)):
            return getattr(obj, part)
        args = getattr(obj, "args", None)  # a call class's keyword argument
        return args.get(part) if isinstance(args, Mapping) else None
    return None


def locate_path(root: Any, path: SpecPath) -> Location | None:
    """The recorded line of the deepest object on `path` from `root`, if any was recorded."""
    found = origin(root)
    obj = root
    for part in path:
        obj = _child(obj, part)
        if obj is None:
            break
        found = origin(obj) or found
    return Location(found[0], found[1], 1) if found else None


def located_where_built(diagnostic: Diagnostic, spec: Any) -> Diagnostic:
    """A diagnostic about a spec built in Python, at the line that built what it is about."""
    if diagnostic.location is not None:
        return diagnostic
    return attrs.evolve(diagnostic, location=locate_path(spec, diagnostic.path))


@attrs.frozen
class PythonSource:
    """A `Spec.source` for a spec built by a Python spec file: paths are located at the line
    that built the object they lead to, else at the file; values set with `--set` at the
    command line. `file` is where relative data paths start, as for YAML."""

    file: str
    built: Any = attrs.field(eq=False, repr=False)  # the spec as the file built it
    overridden: frozenset[SpecPath] = attrs.field(default=frozenset(), eq=False)

    def locate(self, path: SpecPath) -> Location:
        for end in range(len(path), -1, -1):
            if tuple(path[:end]) in self.overridden:
                return Location("<command line>", 1, 1)
        return locate_path(self.built, path) or Location(self.file, 1, 1)
