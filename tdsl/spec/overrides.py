"""`--set path.to.field=value`: edit a spec's plain data before it is checked.

Paths use the spec's own keys with list indices (`model.layers[2].out_features=16`);
values are read as YAML scalars or flow collections (`16`, `0.1`, `3e-4`, `true`, `[8, 3]`),
numbers as in a spec file.
Missing mapping keys are created, so the result goes through the same validation as a file.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

import yaml

from tdsl.errors import Diagnostic, SpecPath, format_path
from tdsl.spec.located_yaml import COMMAND_LINE, load_value

_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(-?\d+)\]")


def parse_path(text: str) -> SpecPath | None:
    parts: list[str | int] = []
    for segment in text.split("."):
        if not segment:
            return None
        index = 0
        while index < len(segment):
            match = _PART.match(segment, index)
            if match is None or (match.group(1) and index > 0):
                return None
            parts.append(match.group(1) if match.group(1) else int(match.group(2)))
            index = match.end()
    return tuple(parts)


def _problem(assignment: str, message: str) -> Diagnostic:
    return Diagnostic((), f"--set {assignment}: {message}", location=COMMAND_LINE)


def overridden_paths(before: Any, after: Any, path: SpecPath = ()) -> frozenset[SpecPath]:
    """The paths whose values differ between two versions of a spec's data (before and after
    the overrides), so that their problems are located at the command line, not in the file."""
    if isinstance(before, dict) and isinstance(after, dict):
        found: set[SpecPath] = set()
        for key, value in after.items():
            if key not in before:
                found.add((*path, key))
            else:
                found |= overridden_paths(before[key], value, (*path, key))
        return frozenset(found)
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        found = set()
        for index, (old, new) in enumerate(zip(before, after, strict=True)):
            found |= overridden_paths(old, new, (*path, index))
        return frozenset(found)
    # 1, 1.0 and true are equal in Python but not in a spec.
    same = type(before) is type(after) and before == after
    return frozenset() if same else frozenset({path})


def apply_overrides(data: Any, assignments: Sequence[str]) -> tuple[Any, list[Diagnostic]]:
    """Apply `path=value` assignments to a copy of `data`; problems are returned, not raised."""
    data = copy.deepcopy(data)
    problems = []
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        path = parse_path(key.strip()) if sep else None
        if not path or not isinstance(path[0], str):
            problems.append(_problem(assignment, "expected PATH=VALUE, e.g. train.epochs=5"))
            continue
        try:
            value = load_value(raw) if raw.strip() else ""
        except (yaml.YAMLError, ValueError, RecursionError, AttributeError):
            problems.append(_problem(assignment, f"cannot read value {raw!r}"))
            continue
        error = _assign(data, path, value)
        if error:
            problems.append(_problem(assignment, error))
    return data, problems


def _assign(data: Any, path: SpecPath, value: Any) -> str | None:
    target = data
    for depth, part in enumerate(path[:-1]):
        following = path[depth + 1]
        if isinstance(part, int):
            if not isinstance(target, list) or not -len(target) <= part < len(target):
                return f"no list element [{part}] at {_prefix(path, depth)}"
            target = target[part]
            continue
        if not isinstance(target, dict):
            return f"{_prefix(path, depth)} is not a mapping"
        if part not in target or target[part] is None:
            target[part] = [] if isinstance(following, int) else {}
        target = target[part]
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(target, list) or not -len(target) <= last < len(target):
            return f"no list element [{last}] at {_prefix(path, len(path) - 1)}"
    elif not isinstance(target, dict):
        return f"{_prefix(path, len(path) - 1)} is not a mapping"
    target[last] = value
    return None


def _prefix(path: SpecPath, length: int) -> str:
    return format_path(path[:length]) if length else "the spec"
