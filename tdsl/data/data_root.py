"""`--data-root DIR` / `data_root=`: a spec from a stranger may only read data under DIR.

Without it a spec can name any file the user can read (`/etc/passwd` as a CSV, `../../..`
as an image folder) and have its cells echoed in messages or copied into transforms.json.
With it, every data path is resolved (symlinks followed) before anything is opened, listed
or hashed, and one that lands outside DIR is refused, located at its spec path.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from tdsl.errors import TdslError
from tdsl.wording import show

P = ParamSpec("P")
R = TypeVar("R")
_ROOT: ContextVar[Path | None] = ContextVar("tdsl_data_root", default=None)


class DataRootError(TdslError):
    """The data root itself is not a folder."""


@contextlib.contextmanager
def data_root(root: str | os.PathLike | None) -> Iterator[None]:
    """Within the block, data paths outside `root` are refused (None: no limit, or the limit
    an enclosing block set)."""
    if root is None:
        yield
        return
    resolved = Path(root).expanduser().resolve()
    if not resolved.is_dir():
        raise DataRootError(f"--data-root {root}: not a folder")
    token = _ROOT.set(resolved)
    try:
        yield
    finally:
        _ROOT.reset(token)


def outside(path: Path) -> Path | None:
    """`path` resolved, when a data root is set and it lies outside it; else None."""
    root = _ROOT.get()
    if root is None:
        return None
    try:
        resolved = path.resolve()  # follows every symlink on the way
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL: not under the root
        return path
    return None if resolved.is_relative_to(root) else resolved


def outside_message(value: str, resolved: Path) -> str:
    return (
        f"{show(value)} resolves to {resolved}, outside the data root {_ROOT.get()}; "
        "it was not read"
    )


HINT = "with --data-root (data_root=), a spec may only read data under that folder"


def accepts_data_root(function: Callable[P, R]) -> Callable[..., R]:
    """`function` with a keyword argument `data_root` (a folder, or None): the call runs
    under `data_root(...)`, so every data path it reads must lie inside that folder."""

    @functools.wraps(function)
    def limited(*args: Any, data_root: str | os.PathLike | None = None, **kwargs: Any) -> R:
        with _limit(data_root):
            return function(*args, **kwargs)

    signature = inspect.signature(function)
    extra = inspect.Parameter(
        "data_root", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="str | None"
    )
    parameters = list(signature.parameters.values())
    at = next(
        (i for i, p in enumerate(parameters) if p.kind is inspect.Parameter.VAR_KEYWORD),
        len(parameters),
    )
    limited.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*parameters[:at], extra, *parameters[at:]]
    )
    return limited


_limit = data_root  # the wrapper's keyword argument shadows the name `data_root`
