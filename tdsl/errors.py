"""Diagnostics: every spec mistake becomes a located, collected `Diagnostic`; and
`TdslError`, the root of every error tdsl raises on purpose.

Nothing in the spec pipeline raises on the first problem; each stage appends to a
`Diagnostics` collector and the caller decides whether to stop. How a message words the
user's values is `tdsl.wording`.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs

from tdsl.wording import did_you_mean, printable, shorten, shorten_quoted

SpecPath = tuple[str | int, ...]
Severity = Literal["error", "warning"]


def format_path(path: SpecPath) -> str:
    """`("model", "layers", 2, "out")` -> `model.layers[2].out`."""
    text = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        else:
            part = printable(shorten(str(part)), lines=False)  # a key is user text too
            text += f".{part}" if text else part
    return text or "<root>"


@attrs.frozen
class Location:
    file: str | None
    line: int  # 1-based
    column: int  # 1-based
    # For a base file of a composed spec: the `base:` entries that brought it in, innermost
    # first, as `FILE:LINE`.
    included_from: tuple[str, ...] = ()


@attrs.frozen
class Diagnostic:
    path: SpecPath
    message: str = attrs.field(converter=shorten_quoted)
    severity: Severity = "error"
    hint: str | None = attrs.field(default=None, converter=shorten_quoted)
    location: Location | None = None

    def format(self) -> str:
        where = "<spec>"
        if self.location is not None:
            file = printable(self.location.file or "<spec>", lines=False)
            where = f"{file}:{self.location.line}:{self.location.column}"
        message = printable(self.message)
        text = f"{where}: {self.severity}: {format_path(self.path)}: {message}"
        for entry in self.location.included_from if self.location is not None else ():
            text += f"\n    included from {printable(entry, lines=False)}"
        if self.hint:
            text += f"\n    hint: {printable(self.hint)}"
        return text

    def to_json(self) -> dict:
        loc = self.location
        return {
            "file": loc.file if loc else None,
            "line": loc.line if loc else None,
            "column": loc.column if loc else None,
            "path": format_path(self.path),
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
        }


class Diagnostics:
    """A collector that stages append to; located at the end by the YAML position map."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []
        # A block used many times reports a mistake in its layers once, not once per use.
        self._seen: set[tuple[str, SpecPath, str]] = set()
        # Every error reported, repeats included: how a stage tells that a part it checked
        # failed even when the failure was already on the list.
        self.error_count = 0

    def _add(self, path: SpecPath, message: str, severity: str, hint: str | None) -> None:
        self.error_count += severity == "error"
        key = (severity, tuple(path), message)
        if key not in self._seen:
            self._seen.add(key)
            self.items.append(Diagnostic(tuple(path), message, severity, hint))

    def error(self, path: SpecPath, message: str, hint: str | None = None) -> None:
        self._add(path, message, "error", hint)

    def warning(self, path: SpecPath, message: str, hint: str | None = None) -> None:
        self._add(path, message, "warning", hint)

    @property
    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self.items)


def check_keywords(
    args: Mapping[str, Any],
    known: Mapping[str, bool],
    what: str,
    path: SpecPath,
    diags: Diagnostics,
    filled: Iterable[str] = (),
) -> bool:
    """Unknown keyword arguments (with did-you-mean) and missing required ones. A required
    argument that an unknown key probably misspells is not reported twice."""
    ok, misspelled = True, set()
    for key in args:
        if key not in known:
            misspelled.update(difflib.get_close_matches(key, list(known), n=1, cutoff=0.6))
            diags.error(
                (*path, key), f"unknown argument {key!r} for {what}", did_you_mean(key, known)
            )
            ok = False
    for key, required in known.items():
        if required and key not in args and key not in filled and key not in misspelled:
            diags.error(path, f"missing required argument {key!r} for {what}")
            ok = False
    return ok


class TdslError(Exception):
    """Root of every error tdsl raises on purpose."""


class SpecError(TdslError):
    """A spec could not be loaded or used; carries every diagnostic found."""

    def __init__(self, diagnostics: Sequence[Diagnostic]):
        self.diagnostics = tuple(diagnostics)
        super().__init__("\n".join(d.format() for d in self.diagnostics))


@attrs.frozen
class Report:
    """What `validate` found: diagnostics plus, when the graph was inferred, its facts."""

    diagnostics: tuple[Diagnostic, ...]
    # Output node -> shape, None marking the batch dimension.
    output_shapes: dict[str, tuple[int | None, ...]] = attrs.field(factory=dict)
    param_count: int | None = None
    # Regularizer / param-group path -> the parameters its selector picked.
    selections: dict[str, tuple[str, ...]] = attrs.field(factory=dict)

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == "error")

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == "warning")

    def format(self) -> str:
        return "\n".join(d.format() for d in self.diagnostics)

    def to_json(self) -> str:
        return json.dumps([d.to_json() for d in self.diagnostics], indent=2)


class DistributedError(TdslError):
    """Processes of a data-parallel run could not start, or one of them failed."""
