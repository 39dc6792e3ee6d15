"""Fitted transforms: the statistics, categories and vocabularies a source learns from its
training rows, as plain JSON.

A run directory keeps them in `transforms.json`; `resume`, `eval` and `predict` re-apply
them instead of fitting again, so validation and prediction rows are transformed exactly as
the training rows were, and nothing is learned from them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from tdsl.data.base import DataError
from tdsl.data.fitted_shapes import state_problem
from tdsl.special_files import open_regular
from tdsl.wording import file_reason, shorten

FORMAT = 1
FILE_NAME = "transforms.json"


@attrs.frozen(eq=False)
class Fitted:
    """What `kind` fitted; `state` is JSON data (dicts, lists, strings, numbers)."""

    kind: str
    state: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "kind": self.kind, **self.state}, indent=1) + "\n"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fitted) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.to_json())

    @classmethod
    def from_json(cls, text: str, where: str = FILE_NAME) -> Fitted:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError.at((), f"{where} is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
            raise DataError.at((), f"{where} does not hold fitted transforms")
        if data.get("format") != FORMAT:
            raise DataError.at(
                (), f"{where} has format {data.get('format')!r}; this tdsl reads {FORMAT}"
            )
        state = {k: v for k, v in data.items() if k not in ("format", "kind")}
        problem = state_problem(data["kind"], state)
        if problem:  # edited by hand, or damaged: refused before a transform trips on it
            raise DataError.at(
                (), f"{where} does not hold valid {data['kind']} transforms: {problem}"
            )
        return cls(data["kind"], state)

    @classmethod
    def load(cls, directory: Path) -> Fitted | None:
        """The transforms a run directory keeps, or None when it has none."""
        path = Path(directory) / FILE_NAME
        if not path.exists():
            return None
        try:
            with open_regular(path) as handle:  # a FIFO would block the read forever
                text = handle.read().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError.at(
                (),
                f"cannot read {path}: {file_reason(exc)}",
            ) from None
        return cls.from_json(text, str(path))

    def expect(self, kind: str, key: str) -> Any:
        """The state entry `key`, checking these transforms were fitted for a `kind` source."""
        if self.kind != kind or key not in self.state:
            raise DataError.at(
                ("kind",),
                f"the fitted transforms are for a {self.kind!r} source, the spec reads {kind!r}",
            )
        return self.state[key]


@contextlib.contextmanager
def tampered_guard(fitted: Fitted | None) -> Iterator[None]:
    """Fitted transforms are read back from a file, which may have been edited: an entry of
    the wrong type or a missing one fails somewhere deep in applying them, and is reported
    as the file's fault instead of as a Python error."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        if fitted is None:
            raise
        what = f"no entry {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
        raise DataError.at(
            (),
            f"the fitted transforms ({FILE_NAME}) are not as tdsl wrote them ({shorten(what)}); "
            "was the file edited? Restore it from the run, or start a new run",
        ) from None


def mismatch(what: str) -> DataError:
    return DataError.at((), f"the fitted transforms do not match the spec: {what}")
