"""Diagnostics: every spec mistake becomes a located, collected `Diagnostic`.

Nothing in the spec pipeline raises on the first problem; each stage appends to a
`Diagnostics` collector and the caller decides whether to stop.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs

SpecPath = tuple[str | int, ...]
Severity = Literal["error", "warning"]


def format_path(path: SpecPath) -> str:
    """`("model", "layers", 2, "out")` -> `model.layers[2].out`."""
    text = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "<root>"


def did_you_mean(word: str, choices: Iterable[str], listing_limit: int = 12) -> str | None:
    """A hint naming the closest choices, or listing them when few exist."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    if choices and len(choices) <= listing_limit:
        return "expected one of: " + ", ".join(choices)
    return None


def describe_value(value: object) -> str:
    """`'fast' (str)`, `true (bool)` — a received value as the user wrote it, and its type."""
    shown = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    kind = {dict: "mapping", type(None): "null"}.get(type(value), type(value).__name__)
    return f"{shown} ({kind})"


@attrs.frozen
class Location:
    file: str | None
    line: int  # 1-based
    column: int  # 1-based


@attrs.frozen
class Diagnostic:
    path: SpecPath
    message: str
    severity: Severity = "error"
    hint: str | None = None
    location: Location | None = None

    def format(self) -> str:
        where = "<spec>"
        if self.location is not None:
            file = self.location.file or "<spec>"
            where = f"{file}:{self.location.line}:{self.location.column}"
        text = f"{where}: {self.severity}: {format_path(self.path)}: {self.message}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
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

    def error(self, path: SpecPath, message: str, hint: str | None = None) -> None:
        self.items.append(Diagnostic(tuple(path), message, "error", hint))

    def warning(self, path: SpecPath, message: str, hint: str | None = None) -> None:
        self.items.append(Diagnostic(tuple(path), message, "warning", hint))

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
