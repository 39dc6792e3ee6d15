"""Diagnostics: every spec mistake becomes a located, collected `Diagnostic`.

Nothing in the spec pipeline raises on the first problem; each stage appends to a
`Diagnostics` collector and the caller decides whether to stop.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from typing import Literal

import attrs

SpecPath = tuple[str | int, ...]
Severity = Literal["error", "warning"]


def format_path(path: SpecPath) -> str:
    """`("model", "layers", 2, "out")` -> `model.layers[2].out`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
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
    """`'fast' (str)` — how a received value is shown in messages."""
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{shown} ({type(value).__name__})"


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
