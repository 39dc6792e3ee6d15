"""Structure hooks for the values inside a spec, and the `Invalid` they raise.

Scalars, literals, lists, named maps and kind-tagged unions: every value that is not a
spec class itself (those hooks live in `tdsl.spec.convert`). Each hook raises `Invalid`
with paths relative to the value it was given; the enclosing hook prefixes its key.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import cattrs

from tdsl import spec as S
from tdsl.errors import Diagnostic, SpecPath
from tdsl.spec.frozen import FrozenMap
from tdsl.wording import describe_value, did_you_mean, show


class Invalid(Exception):
    """Problems found while structuring one value, with paths relative to it."""

    def __init__(self, problems: list[Diagnostic]):
        super().__init__(problems)
        self.problems = problems

    @classmethod
    def at(cls, path: SpecPath, message: str, hint: str | None = None) -> Invalid:
        return cls([Diagnostic(tuple(path), message, "error", hint)])

    def under(self, key: str | int) -> list[Diagnostic]:
        return [attrs.evolve(p, path=(key, *p.path)) for p in self.problems]


_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def expected(word: str, value: Any) -> Invalid:
    return Invalid.at((), f"expected {word}, got {describe_value(value)}")


def scalar_hook(kind: type) -> Callable[[Any, type], Any]:
    def hook(value: Any, _type: type) -> Any:
        # bool is an int in Python, but `epochs: true` is a mistake, not a 1.
        if isinstance(value, bool) and kind is not bool:
            raise expected(_TYPE_WORDS[kind], value)
        if kind is float and isinstance(value, int):
            return float(value)
        if not isinstance(value, kind):
            raise expected(_TYPE_WORDS[kind], value)
        return value

    return hook


def literal_hook(value: Any, type_: Any) -> Any:
    choices = typing.get_args(type_)
    if value in choices and type(value) is type(choices[0]):
        return value
    hint = did_you_mean(str(value), [str(c) for c in choices])
    raise Invalid.at((), f"expected one of {', '.join(map(str, choices))}; got {show(value)}", hint)


def is_union(type_: Any) -> bool:
    return typing.get_origin(type_) in (typing.Union, types.UnionType)


def is_var_tuple(type_: Any) -> bool:
    args = typing.get_args(type_)
    return typing.get_origin(type_) is tuple and len(args) == 2 and args[1] is Ellipsis


def _kinds_hint(word: str, kinds: Mapping[str, Any]) -> str | None:
    """A union's kinds are the spec's own vocabulary: listed in full, however many."""
    return did_you_mean(word, kinds, listing_limit=len(kinds))


def expect_mapping(value: Any, noun: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise expected(f"a mapping ({noun})", value)
    return value


def var_tuple_factory(conv: cattrs.Converter) -> Callable[[Any], Callable]:
    """`tuple[X, ...]`: a YAML list, item by item (a bare string for a list of strings)."""

    def factory(type_: Any) -> Callable[[Any, type], tuple]:
        item_type = typing.get_args(type_)[0]

        def hook(value: Any, _t: type) -> tuple:
            if isinstance(value, str) and item_type is str:
                return (value,)  # `inputs: x` means `inputs: [x]`
            if isinstance(value, str | bytes | Mapping) or not isinstance(value, list | tuple):
                raise expected("a list", value)
            items, problems = [], []
            for index, item in enumerate(value):
                try:
                    items.append(conv.structure(item, item_type))
                except Invalid as exc:
                    problems += exc.under(index)
            if problems:
                raise Invalid(problems)
            return tuple(items)

        return hook

    return factory


def named_map_factory(conv: cattrs.Converter) -> Callable[[Any], Callable]:
    """`dict[str, X]`: a mapping of names, value by value."""

    def factory(type_: Any) -> Callable[[Any, type], FrozenMap]:
        item_type = typing.get_args(type_)[1]

        def hook(value: Any, _t: type) -> FrozenMap:
            items, problems = {}, []
            for key, item in expect_mapping(value, "of names").items():
                if not isinstance(key, str):
                    problems.append(Diagnostic((key,), f"a name must be a string, got {show(key)}"))
                    continue
                try:
                    items[key] = conv.structure(item, item_type)
                except Invalid as exc:
                    problems += exc.under(key)
            if problems:
                raise Invalid(problems)
            return FrozenMap(items)

        return hook

    return factory


def union_factory(conv: cattrs.Converter) -> Callable[[Any], Callable]:
    """Unions: picked by their `kind` key where every member has one, else the first
    member that takes the value."""

    def factory(type_: Any) -> Callable[[Any, type], Any]:
        members = [m for m in typing.get_args(type_) if m is not type(None)]
        optional = len(members) < len(typing.get_args(type_))
        if len(members) > 1 and all(
            attrs.has(m) and "kind" in attrs.fields_dict(m) for m in members
        ):
            tagged = {attrs.fields_dict(m)["kind"].default: m for m in members}
        else:
            tagged = None

        def hook(value: Any, _t: type) -> Any:
            if value is None and optional:
                return None
            if tagged is None:  # the first member that takes the value; else its problems
                first = None
                for member in members:
                    try:
                        return conv.structure(value, member)
                    except Invalid as exc:
                        first = first or exc
                raise first
            mapping = expect_mapping(value, "with a 'kind' key")
            if "kind" not in mapping:
                raise Invalid.at((), "missing required key 'kind'", _kinds_hint("", tagged))
            kind = mapping["kind"]
            if not isinstance(kind, str):
                raise Invalid.at(
                    ("kind",),
                    f"expected a string, got {describe_value(kind)}",
                    _kinds_hint(str(kind), tagged),
                )
            cls = tagged.get(kind)
            if cls is None and kind == "arrays":  # they exist only as Python objects
                raise Invalid.at(("kind",), S.PYTHON_ONLY)
            if cls is None:
                hint = _kinds_hint(str(mapping["kind"]), tagged)
                raise Invalid.at(("kind",), f"unknown kind {mapping['kind']!r}", hint)
            return conv.structure(mapping, cls)

        return hook

    return factory
