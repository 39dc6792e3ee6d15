"""Tracing on meta tensors without importing torch._dynamo.

torch marks many of its own functions (every dispatch mode's `__torch_dispatch__`, the
elementwise reference implementations that meta tensors run) as "not for the compiler"
with a decorator that imports torch._dynamo on the first call, about 1.2 s, to learn how
to mark them. A cost estimate compiles nothing, so while it traces, `torch._dynamo` is a
stand-in whose `disable` returns the function unchanged; afterwards the stand-in and
every mark it left are removed, so a later real import of torch._dynamo (a compiled
training step in the same process) marks those functions properly. Any other use of the
stand-in imports the real module, so nothing can go wrong, only slower.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
import types
from collections.abc import Callable, Iterator

import torch

_NAME = "torch._dynamo"
_MARK = "__dynamo_disable"  # the attribute torch's decorator caches its marked function in
_LOCK = threading.Lock()


class _StandIn(types.ModuleType):
    def __init__(self) -> None:
        super().__init__(_NAME)
        self.marked: list[Callable] = []

    def disable(self, fn: Callable, recursive: bool = True, wrapping: bool = True) -> Callable:
        self.marked.append(fn)
        return fn

    def __getattr__(self, name: str):
        # Anything but `disable`: step aside and hand over the real module.
        _remove(self)
        return getattr(importlib.import_module(_NAME), name)


def _remove(stand_in: _StandIn) -> None:
    if sys.modules.get(_NAME) is stand_in:
        del sys.modules[_NAME]
    if torch.__dict__.get("_dynamo") is stand_in:
        del torch._dynamo
    for fn in stand_in.marked:
        if getattr(fn, _MARK, None) is fn:
            delattr(fn, _MARK)
    stand_in.marked.clear()


@contextlib.contextmanager
def dynamo_import_deferred() -> Iterator[None]:
    """While inside, torch's "not for the compiler" marks do not import torch._dynamo."""
    if _NAME in sys.modules or not _LOCK.acquire(blocking=False):
        yield  # already imported (nothing to save), or another thread is tracing
        return
    stand_in = _StandIn()
    sys.modules[_NAME] = stand_in
    try:
        yield
    finally:
        _remove(stand_in)
        _LOCK.release()
