"""Tracing on meta tensors without importing sympy.

Every `torch._check` in torch's Python meta kernels (embedding, layer norm, reshapes ...)
imports `torch.fx.experimental.symbolic_shapes` to ask whether its condition holds, and
that module imports sympy (about a second), for shapes that are all plain integers here;
elementwise type promotion imports sympy only to ask whether an argument is a sympy
expression. While a cost estimate traces, both modules are stand-ins: the shape predicates
answer for plain bools and ints exactly as torch's do, and `sympy.Basic` is a class nothing
is an instance of. Given a symbolic value, or asked for any other name, a stand-in removes
both and hands over the real modules, so nothing can go wrong, only slower. The stand-ins
are removed afterwards, and `Basic` taken back from any module that kept the stand-in, so
a compiled step later in the process sees the real ones.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any

import torch

_PARENT = "torch.fx.experimental"
_NAME = f"{_PARENT}.symbolic_shapes"
_SYMPY = "sympy"
_LOCK = threading.Lock()


def _real(name: str = _NAME) -> types.ModuleType:
    for module_name in (_NAME, _SYMPY):
        if isinstance(sys.modules.get(module_name), (_StandIn, _SympyStandIn)):
            _remove(sys.modules[module_name])
    return importlib.import_module(name)


def _plain_bool(value: Any) -> bool:
    return type(value) is bool


def _plain_int(value: Any) -> bool:
    return type(value) is int or type(value) is bool


def _concrete(name: str, check):
    """torch's predicate `name`, answered here when `check` accepts the arguments."""

    def predicate(*args, **kwargs):
        values = args if name in _SEVERAL_VALUES else args[:1]
        if values and all(check(value) for value in values):
            return _ANSWERS[name](*args, **kwargs)
        return getattr(_real(), name)(*args, **kwargs)

    predicate.__name__ = name
    return predicate


def _sym_eq_plain(x: Any, y: Any) -> bool:
    if isinstance(x, (tuple, list)) and isinstance(y, (tuple, list)):
        return len(x) == len(y) and all(_sym_eq_plain(a, b) for a, b in zip(x, y, strict=True))
    return x == y


def _plain_nested(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_plain_nested(item) for item in value)
    return _plain_int(value)


def _no_symbols(value: Any) -> bool:
    """Whether `value` holds no symbolic size anywhere (torch's `_iterate_exprs` walk)."""
    if value is None or isinstance(value, (int, float, bool, str)):
        return type(value) in (int, float, bool, str, type(None))
    if isinstance(value, (tuple, list)):
        return all(_no_symbols(item) for item in value)
    if isinstance(value, dict):
        return all(_no_symbols(item) for item in (*value.keys(), *value.values()))
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided:
            return _no_symbols(tuple(value.shape))
        return _no_symbols((*value.shape, *value.stride(), value.storage_offset()))
    return False


def _joined(operation):
    def join(first, *others):
        for other in others:
            first = operation(first, other)
        return first

    return join


_SEVERAL_VALUES = {"sym_eq", "sym_and", "sym_or"}
# The answers torch's own functions give for plain Python values (symbolic_shapes.py).
_ANSWERS = {
    "expect_true": lambda a, skip=0: a,
    "guard_bool": lambda a: a,
    "guard_or_false": lambda a: a,
    "guard_or_true": lambda a: a,
    "guard_size_oblivious": lambda a: a,
    "statically_known_true": lambda a: a,
    "statically_known_false": lambda a: not a,
    "sym_eq": _sym_eq_plain,
    "sym_and": _joined(lambda a, b: a & b),
    "sym_or": _joined(lambda a, b: a | b),
    "is_nested_int": lambda a: False,
    "has_guarding_hint": lambda a: True,
    "guarding_hint_or_throw": lambda a: a,
    "is_concrete_int": lambda a: True,
    "free_symbols": lambda a: frozenset(),
    "free_unbacked_symbols": lambda a: frozenset(),
}
_CHECKS = {
    "expect_true": _plain_bool,
    "guard_bool": _plain_bool,
    "guard_or_false": _plain_bool,
    "guard_or_true": _plain_bool,
    "guard_size_oblivious": _plain_bool,
    "statically_known_true": _plain_bool,
    "statically_known_false": _plain_bool,
    "sym_eq": _plain_nested,
    "sym_and": _plain_bool,
    "sym_or": _plain_bool,
    "is_nested_int": lambda a: isinstance(a, (int, float)),
    "has_guarding_hint": lambda a: isinstance(a, (int, float)),
    "guarding_hint_or_throw": _plain_int,
    "is_concrete_int": _plain_int,
    "free_symbols": _no_symbols,
    "free_unbacked_symbols": _no_symbols,
}


class _StandIn(types.ModuleType):
    def __init__(self) -> None:
        super().__init__(_NAME)
        for name, check in _CHECKS.items():
            setattr(self, name, _concrete(name, check))

    def __getattr__(self, name: str):
        if name.startswith("__"):  # `from ... import` asks for `__path__`: a module has none
            raise AttributeError(name)
        # Anything else: step aside and hand over the real module.
        return getattr(_real(), name)


class _NotSympy:
    """Stands for `sympy.Basic` in isinstance checks: the trace's values are plain."""


class _SympyStandIn(types.ModuleType):
    def __init__(self) -> None:
        super().__init__(_SYMPY)
        self.Basic = _NotSympy

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(_real(_SYMPY), name)


def _remove(stand_in: types.ModuleType) -> None:
    if sys.modules.get(stand_in.__name__) is stand_in:
        del sys.modules[stand_in.__name__]
    parent = sys.modules.get(_PARENT)
    if parent is not None and parent.__dict__.get("symbolic_shapes") is stand_in:
        delattr(parent, "symbolic_shapes")
    if isinstance(stand_in, _SympyStandIn):
        stand_in.__dict__.pop("Basic", None)  # a module that kept the stand-in gets the real
        for module in list(sys.modules.values()):  # a `from sympy import Basic` in the trace
            if getattr(module, "__dict__", {}).get("Basic") is _NotSympy:
                module.Basic = _real(_SYMPY).Basic


@contextlib.contextmanager
def symbolic_shapes_deferred() -> Iterator[None]:
    """While inside, torch's shape checks on plain integers do not import sympy."""
    parent = sys.modules.get(_PARENT)
    imported = _NAME in sys.modules or _SYMPY in sys.modules
    if imported or parent is None or not _LOCK.acquire(blocking=False):
        yield  # already imported (nothing to save), or another thread is tracing
        return
    stand_ins = (_StandIn(), _SympyStandIn())
    for stand_in in stand_ins:
        sys.modules[stand_in.__name__] = stand_in
    parent.symbolic_shapes = stand_ins[0]
    try:
        yield
    finally:
        for stand_in in stand_ins:
            _remove(stand_in)
        _LOCK.release()
