"""`--set path.to.field=value`: edit a spec's plain data before it is checked.

Paths use the spec's own keys with list indices (`model.layers[2].out_features=16`);
values are read as YAML scalars or flow collections (`16`, `0.1`, `3e-4`, `true`, `[8, 3]`),
numbers as in a spec file.
Missing mapping keys are created, so the result goes through the same validation as a file.
A shorthand string on the way (`device: auto`, `loss: bce`, `- relu`) is first written out as
the mapping it stands for (`device.strategy=ddp` gives `{name: auto, strategy: ddp}`).

`path+=value` appends one item to a list (`metrics+=auroc`); `~path` removes a key, so the
field takes its default (`~train.early_stopping`).
"""

from __future__ import annotations

import copy
import functools
import re
import types
import typing
from collections.abc import Sequence
from typing import Any

import attrs
import yaml

from tdsl import spec as S
from tdsl.errors import Diagnostic, SpecPath, format_path
from tdsl.spec.convert import STRING_SHORTHAND
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


_USAGE = "expected PATH=VALUE, PATH+=VALUE or ~PATH, e.g. train.epochs=5"


def apply_overrides(data: Any, assignments: Sequence[str]) -> tuple[Any, list[Diagnostic]]:
    """Apply `path=value`, `path+=value` and `~path` to a copy of `data`; problems are
    returned, not raised."""
    data = copy.deepcopy(data)
    problems = []
    for assignment in assignments:
        error = _apply_one(data, assignment)
        if error:
            problems.append(_problem(assignment, error))
    return data, problems


def _apply_one(data: Any, assignment: str) -> str | None:
    if assignment.startswith("~"):
        path = parse_path(assignment[1:].strip())
        if not path or not isinstance(path[0], str) or "=" in assignment:
            return _USAGE
        return _walk(data, path, _remove)
    key, sep, raw = assignment.partition("=")
    append = key.endswith("+")
    path = parse_path(key.removesuffix("+").strip()) if sep else None
    if not path or not isinstance(path[0], str):
        return _USAGE
    try:
        value = load_value(raw) if raw.strip() else ""
    except (yaml.YAMLError, ValueError, RecursionError, AttributeError):
        return f"cannot read value {raw!r}"
    return _walk(data, path, _append if append else _set, value)


def _walk(data: Any, path: SpecPath, action, value: Any = None) -> str | None:
    """Go to the container of `path`'s last part, creating missing mappings and writing out
    shorthand strings, then let `action` change it."""
    if not isinstance(data, dict):
        return "the spec is not a mapping"
    target = data
    for depth, part in enumerate(path[:-1]):
        following = path[depth + 1]
        if isinstance(part, int):
            if not isinstance(target, list) or not -len(target) <= part < len(target):
                return f"no list element [{part}] at {_prefix(path, depth)}"
        elif part not in target or target[part] is None:
            if action is _remove:
                return f"nothing at {_prefix(path, depth + 1)} to remove"
            target[part] = [] if isinstance(following, int) else {}
        key = shorthand_key(path[: depth + 1])
        if isinstance(target[part], str) and key and not isinstance(following, int):
            target[part] = {key: target[part]}
        target = target[part]
        if not isinstance(target, dict | list) or (
            isinstance(following, str) and not isinstance(target, dict)
        ):
            return f"{_prefix(path, depth + 1)} is not a mapping"
    return action(target, path, value)


def _set(target: Any, path: SpecPath, value: Any) -> str | None:
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(target, list) or not -len(target) <= last < len(target):
            return f"no list element [{last}] at {_prefix(path, len(path) - 1)}"
    elif not isinstance(target, dict):
        return f"{_prefix(path, len(path) - 1)} is not a mapping"
    target[last] = value
    return None


def _append(target: Any, path: SpecPath, value: Any) -> str | None:
    last = path[-1]
    if isinstance(target, dict) and target.get(last) is None:
        target[last] = []  # an absent list starts empty
    elif isinstance(target, list) and isinstance(last, int):
        if not -len(target) <= last < len(target):
            return f"no list element [{last}] at {_prefix(path, len(path) - 1)}"
    elif not isinstance(target, dict):
        return f"{_prefix(path, len(path) - 1)} is not a mapping"
    if not isinstance(target[last], list):
        return f"{format_path(path)} is not a list to append to"
    target[last].append(value)
    return None


def _remove(target: Any, path: SpecPath, _value: Any) -> str | None:
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(target, list) or not -len(target) <= last < len(target):
            return f"no list element [{last}] at {_prefix(path, len(path) - 1)}"
    elif not isinstance(target, dict) or last not in target:
        return f"nothing at {format_path(path)} to remove"
    del target[last]
    return None


def shorthand_key(path: SpecPath) -> str | None:
    """The key a bare string at `path` stands for (`name` for `device`, `op` for a layer),
    found from the spec classes' field types; None where no shorthand applies."""
    classes: set[type] = {S.Spec}
    for part in path:
        found: set[type] = set()
        for cls in classes:
            found |= _inner(cls, part)
        classes = found
    keys = {STRING_SHORTHAND[c] for c in classes if c in STRING_SHORTHAND}
    return keys.pop() if len(keys) == 1 else None


def _inner(cls: Any, part: str | int) -> set[type]:
    """The classes one step inside `cls` (a spec class, or a tuple/mapping/union type)."""
    if attrs.has(cls) and isinstance(part, str):
        hint = _hints(cls).get(part)
        return _classes(hint) if hint is not None else set()
    origin, args = typing.get_origin(cls), typing.get_args(cls)
    if origin is tuple and isinstance(part, int) and args:
        return _classes(args[0])
    if origin in (dict, typing.Mapping) and isinstance(part, str) and len(args) == 2:
        return _classes(args[1])
    return set()


def _classes(hint: Any) -> set[Any]:
    """A type with its unions opened: the spec classes and containers it can be."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return {c for arg in typing.get_args(hint) for c in _classes(arg)}
    return {hint}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _prefix(path: SpecPath, length: int) -> str:
    return format_path(path[:length]) if length else "the spec"
