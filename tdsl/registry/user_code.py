"""User code by import path (`op: mylab.layers.Gate`, `loss: {kind: mylab.losses.Dice}`).

A spec is data and may come from a stranger, so naming code in it imports nothing unless
the user allows that prefix: `--allow-import mylab` on the command line, or
`allow_imports=["mylab"]` in Python.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from tdsl.errors import TdslError
from tdsl.wording import shorten, show


class ImportRefused(TdslError):
    """An import path that is not allowed, or that does not import."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint


def is_import_path(name: str) -> bool:
    """`pkg.module.Name` or `pkg.module:Name`, but not `nn.X` / `torch.nn.X`."""
    return ("." in name or ":" in name) and not name.startswith(("nn.", "torch.nn."))


def _allowed(path: str, prefixes: Sequence[str]) -> bool:
    return any(path == p or path.startswith((p + ".", p + ":")) for p in prefixes)


def import_object(path: str, allow_imports: Sequence[str]) -> object:
    """The object at `path`, imported only if a prefix in `allow_imports` covers it; raises
    `ImportRefused` (with the flag that would allow it) otherwise, or if the import fails."""
    top = shorten(path.replace(":", ".").split(".", 1)[0])
    if not _allowed(path, allow_imports):
        raise ImportRefused(
            f"importing {show(path)} is not allowed",
            f"if you trust it, allow it with --allow-import {top} "
            f"(in Python: allow_imports=[{top!r}])",
        )
    module_name, _, attribute = path.rpartition(":") if ":" in path else path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except Exception as exc:  # any failure of user code is reported, not raised
        reason = str(exc).strip().splitlines()
        detail = f"{type(exc).__name__}: {reason[0]}" if reason else type(exc).__name__
        raise ImportRefused(f"cannot import {show(path)}: {detail}") from None
