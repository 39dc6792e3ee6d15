"""`load` and `dump`: YAML text or files <-> `Spec`, with every problem located."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs

from tdsl import spec as S
from tdsl.errors import Diagnostic, Location, SpecError
from tdsl.spec.compose import compose, has_bases
from tdsl.spec.convert import unstructure
from tdsl.spec.located_yaml import SourceMap, dump_data, parse, read_text
from tdsl.spec.overrides import overridden_paths
from tdsl.spec.partial import Sections, structure_sections


def _looks_like_path(source: str) -> bool:
    return "\n" not in source and source.strip().endswith((".yaml", ".yml"))


def read_spec(
    source: str | os.PathLike, overrides: Any = None
) -> tuple[S.Spec | None, list[Diagnostic]]:
    """Load without raising: (spec or None, diagnostics located in the file).

    `source` is a path (a `Path`, or a string ending in .yaml/.yml) or YAML text.
    `overrides` is applied to the parsed data before structuring (see `tdsl.overrides`).
    """
    read = read_sections(source, overrides)
    return (read.spec, []) if not read.problems else (None, read.problems)


def read_sections(source: str | os.PathLike, overrides: Any = None) -> Sections:
    """`read_spec` for validation: where only some sections are wrong, also the spec made
    of the others (see `tdsl.spec.partial`), so their checks still run."""
    spec, problems = _read_data(source, overrides)
    if spec is None:
        return Sections(None, problems)
    data, source_map = spec
    read = structure_sections(data)
    if read.spec is None:
        return Sections(None, [locate(p, source_map) for p in read.problems])
    problems = [locate(p, source_map) for p in read.problems]
    if not read.broken:
        return Sections(attrs.evolve(read.spec, source=source_map), problems)
    # `evolve` would run the converters on the broken sections' None: set the field.
    object.__setattr__(read.spec, "source", source_map)
    return Sections(read.spec, problems, read.broken)


def _read_data(
    source: str | os.PathLike, overrides: Any
) -> tuple[tuple[dict, SourceMap] | None, list[Diagnostic]]:
    """The parsed, composed and overridden mapping with where each value sits, or problems."""
    file: str | None = None
    if isinstance(source, os.PathLike) or _looks_like_path(str(source)):
        file = os.fspath(source)
        if Path(file).exists() and not Path(file).is_file():
            # A directory, a FIFO or a device: reading it fails or blocks forever.
            return None, [Diagnostic((), "not a regular file", location=Location(file, 1, 1))]
        try:
            text = read_text(Path(file))
        except FileNotFoundError:
            return None, [Diagnostic((), "no such file", location=Location(file, 1, 1))]
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
            return None, [
                Diagnostic((), f"cannot read spec: {reason}", location=Location(file, 1, 1))
            ]
    else:
        text = str(source)
    data, source_map, problems = parse(text, file)
    if problems:
        return None, problems
    if data is None:
        return None, [Diagnostic((), "the spec is empty", location=Location(file, 1, 1))]
    if has_bases(data):  # `base: [...]`: other spec files merged under this one
        data, source_map, problems = compose(data, source_map, file)
        if problems:
            return None, problems
    if overrides is not None:
        data, override_problems = overrides(before := data)
        if override_problems:
            return None, override_problems
        # A value set on the command line is reported there, not where the file had one.
        source_map = attrs.evolve(source_map, overridden=overridden_paths(before, data))
    if not isinstance(data, dict):
        message = f"a spec is a mapping of sections, got {type(data).__name__}"
        return None, [Diagnostic((), message, location=Location(file, 1, 1))]
    return (data, source_map), []


def locate(diagnostic: Diagnostic, source_map: SourceMap | None) -> Diagnostic:
    if diagnostic.location is not None or source_map is None:
        return diagnostic
    return attrs.evolve(diagnostic, location=source_map.locate(diagnostic.path))


def load(source: str | os.PathLike) -> S.Spec:
    """A spec from a YAML file or YAML text; raises `SpecError` listing every problem."""
    spec, problems = read_spec(source)
    if spec is None:
        raise SpecError(problems)
    return spec


def to_data(spec: S.Spec, defaults: bool = False) -> dict[str, Any]:
    """The plain dict a user would write: defaults left out, or all spelled out."""
    return unstructure(spec, defaults)


def dump(spec: S.Spec, defaults: bool = False) -> str:
    """The spec as readable YAML; `load(dump(spec)) == spec` either way."""
    return dump_data(to_data(spec, defaults))
