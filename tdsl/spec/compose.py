"""Composed specs: `base: [common/data.yaml, common/model.yaml]` deep-merges other spec
files (paths relative to the spec that names them) in order, with the spec's own keys on top.

Mappings merge key by key; any other value (a list included) replaces the base's. In a
mapping, `_delete_: [key, ...]` removes those keys of the base first, and `_delete_: true`
drops the base's whole mapping there (as MMEngine's `_delete_`). The source maps merge with
the data, so every value is located in the file that wrote it, a base file's locations
naming the `base:` entries that included it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs

from tdsl.errors import Diagnostic, Location, SpecPath
from tdsl.spec.located_yaml import SourceMap, parse, read_text
from tdsl.wording import describe_value, did_you_mean

BASE_KEY = "base"
DELETE_KEY = "_delete_"
MAX_BASES = 64  # files in one composition: a real one has a handful


def has_bases(data: Any) -> bool:
    return isinstance(data, dict) and BASE_KEY in data


def compose(
    data: dict, source_map: SourceMap, file: str | None
) -> tuple[Any, SourceMap, list[Diagnostic]]:
    """The spec `data` (read from `file`) with its bases merged under it."""
    composer = _Composer()
    start = (os.path.realpath(file),) if file is not None else ()
    merged, positions = composer.expand(data, source_map.positions, file, start)
    return merged, SourceMap(file, positions), composer.problems


class _Composer:
    def __init__(self) -> None:
        self.problems: list[Diagnostic] = []
        self.files = 0

    def error(self, path: SpecPath, message: str, where: Location, hint: str | None = None):
        self.problems.append(Diagnostic(path, message, hint=hint, location=where))

    def expand(
        self,
        data: dict,
        positions: dict[SpecPath, Location],
        file: str | None,
        stack: tuple[str, ...],
    ) -> tuple[Any, dict[SpecPath, Location]]:
        """`data` merged over its bases (each expanded first), and the merged positions."""
        own = {k: v for k, v in data.items() if k != BASE_KEY}
        own_positions = {p: loc for p, loc in positions.items() if p[:1] != (BASE_KEY,)}
        merged: Any = {}
        merged_positions: dict[SpecPath, Location] = {}
        listed = self.entries(data[BASE_KEY], positions, file) if BASE_KEY in data else ()
        for entry, where, base_path in listed:
            if base_path is None:
                continue
            loaded = self.load(entry, where, base_path, stack)
            if loaded is not None:
                merged, merged_positions = self.merge(merged, merged_positions, *loaded, ())
        return self.merge(merged, merged_positions, own, own_positions, ())

    def entries(self, value: Any, positions: dict[SpecPath, Location], file: str | None):
        """(entry, its location, the path it names) for each `base:` entry."""
        key_at = positions.get((BASE_KEY,), Location(file, 1, 1))
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(item, str) and item for item in items):
            expected = "a file name or a list of file names of base specs"
            self.error((BASE_KEY,), f"expected {expected}, got {describe_value(value)}", key_at)
            return
        if file is None:
            self.error((BASE_KEY,), "base specs need a spec file to be relative to", key_at)
            return
        folder = os.path.dirname(file)
        for index, item in enumerate(items):
            path = (BASE_KEY, index) if isinstance(value, list) else (BASE_KEY,)
            yield item, positions.get(path, key_at), os.path.normpath(os.path.join(folder, item))

    def load(
        self, entry: str, where: Location, base_path: str, stack: tuple[str, ...]
    ) -> tuple[Any, dict[SpecPath, Location]] | None:
        real = os.path.realpath(base_path)
        if real in stack:
            self.error(
                (BASE_KEY,), f"base {entry!r} forms a cycle: it is already being included", where
            )
            return None
        self.files += 1
        if self.files > MAX_BASES:
            self.error((BASE_KEY,), f"more than {MAX_BASES} base files", where)
            return None
        try:
            text = read_text(Path(base_path))
        except FileNotFoundError:
            hint = _near(base_path)
            self.error((BASE_KEY,), f"no such base spec: {base_path}", where, hint)
            return None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8"
            self.error((BASE_KEY,), f"cannot read base spec {base_path}: {reason}", where)
            return None
        via = (f"{where.file}:{where.line}", *where.included_from)
        data, source_map, problems = parse(text, base_path)
        self.problems += [_via(p, via) for p in problems]
        if problems:
            return None
        positions = {
            p: attrs.evolve(loc, included_from=via) for p, loc in source_map.positions.items()
        }
        if not isinstance(data, dict):
            at = Location(base_path, 1, 1, via)
            self.error((), f"a base spec is a mapping, got {describe_value(data)}", at)
            return None
        return self.expand(data, positions, base_path, (*stack, real))

    def merge(
        self,
        base: Any,
        base_positions: dict[SpecPath, Location],
        top: Any,
        top_positions: dict[SpecPath, Location],
        path: SpecPath,
    ) -> tuple[Any, dict[SpecPath, Location]]:
        """`top` over `base` at `path`; positions under `path` follow the values kept."""
        if not (isinstance(base, dict) and isinstance(top, dict)):
            kept = {p: loc for p, loc in base_positions.items() if p[: len(path)] != path}
            kept.update(top_positions)
            return _without_deletes(top), kept
        result = dict(base)
        positions = dict(base_positions)
        if DELETE_KEY in top:
            result, positions = self.delete(result, positions, top, top_positions, path)
        for key, value in top.items():
            if key == DELETE_KEY:
                continue
            sub = (*path, key)
            mine = {p: loc for p, loc in top_positions.items() if p[: len(sub)] == sub}
            if key in result:
                result[key], positions = self.merge(result[key], positions, value, mine, sub)
            else:
                result[key] = _without_deletes(value)
                positions.update(mine)
        return result, positions

    def delete(self, result, positions, top, top_positions, path):
        value = top[DELETE_KEY]
        where = top_positions.get((*path, DELETE_KEY), Location(None, 1, 1))
        if value is True:
            return {}, {p: loc for p, loc in positions.items() if p[: len(path)] != path}
        if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
            expected = "true or a list of keys of the base to delete"
            self.error(
                (*path, DELETE_KEY), f"expected {expected}, got {describe_value(value)}", where
            )
            return result, positions
        for key in value:
            if key not in result:
                message = f"cannot delete {key!r}: the base has no such key here"
                self.error((*path, DELETE_KEY), message, where, did_you_mean(key, map(str, result)))
                continue
            del result[key]
            gone = (*path, key)
            positions = {p: loc for p, loc in positions.items() if p[: len(gone)] != gone}
        return result, positions


def _without_deletes(value: Any) -> Any:
    """A value with nothing under it to merge into: its `_delete_` keys mean nothing."""
    if isinstance(value, dict):
        return {k: _without_deletes(v) for k, v in value.items() if k != DELETE_KEY}
    if isinstance(value, list):
        return [_without_deletes(v) for v in value]
    return value


def _via(problem: Diagnostic, via: tuple[str, ...]) -> Diagnostic:
    if problem.location is None:
        return problem
    return attrs.evolve(problem, location=attrs.evolve(problem.location, included_from=via))


def _near(path: str) -> str | None:
    folder = Path(path).parent
    if not folder.is_dir():
        return f"there is no folder {folder}"
    names = [p.name for p in folder.iterdir() if p.suffix in (".yaml", ".yml")]
    return did_you_mean(Path(path).name, names, listing_limit=0)
