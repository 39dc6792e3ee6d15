"""tdsl's own cattrs Converter: plain data <-> spec classes.

Structuring collects every problem in the tree instead of stopping at the first: each
hook raises `Invalid` carrying diagnostics with paths relative to the value it was given,
and the enclosing hook prefixes its key and keeps going with the siblings. The hooks for
values inside a spec (scalars, lists, unions) are in `tdsl.spec.value_hooks`; this module
assembles the converter and maps each spec class to and from its YAML mapping.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any, Literal

import attrs
import cattrs

from tdsl import spec as S
from tdsl.errors import Diagnostic
from tdsl.spec.frozen import FrozenMap, freeze, thaw
from tdsl.spec.value_hooks import (
    Invalid,
    expect_mapping,
    is_union,
    is_var_tuple,
    literal_hook,
    named_map_factory,
    scalar_hook,
    union_factory,
    var_tuple_factory,
)
from tdsl.wording import did_you_mean

# How each class is named in messages: by the YAML section it is, not the Python class.
_MAPPING_NOUNS = {
    S.Spec: "the spec",
    S.Model: "model",
    S.Input: "model input",
    S.Train: "train",
    S.EarlyStopping: "early_stopping",
    S.Checkpoint: "checkpoint",
    S.Compile: "compile",
    S.Device: "device",
    S.Split: "split",
    S.Target: "target",
    S.Column: "column",
    S.Regularizer: "regularizer",
    **{cls: f"data (kind {kind})" for kind, cls in S.DATA_SOURCES.items()},
    S.Layer: "layer",
    S.ParamSelector: "parameter selector",
    S.Initializer: "initializer",
    S.InitFrom: "init",
    S.Loss: "loss",
    S.LossTerm: "loss term",
    S.Optimizer: "optimizer",
    S.ParamGroup: "param group",
    S.Schedule: "schedule",
    S.Metric: "metric",
}
# Bare strings stand for a spec with only its name: `- relu`, `metrics: [accuracy]`,
# `device: cpu`, `loss: mse`, `optimizer: adam`, a CSV column `- Fare`.
STRING_SHORTHAND = {
    S.Layer: "op",
    S.ParamSelector: "params",
    S.Column: "name",
    S.Metric: "kind",
    S.Device: "name",
    S.Loss: "kind",
    S.LossTerm: "kind",
    S.Optimizer: "kind",
    S.Schedule: "kind",
    S.Compile: "mode",
}


def make_converter(omit_defaults: bool = True) -> cattrs.Converter:
    """Build a converter (tdsl's own, never cattrs' global). With omit_defaults, specs
    unstructure to what a user would write; without, to every field spelled out."""
    conv = cattrs.Converter(forbid_extra_keys=True)
    for kind in (int, float, bool, str):
        conv.register_structure_hook(kind, scalar_hook(kind))
    conv.register_structure_hook(Any, lambda value, _t: freeze(value))
    conv.register_structure_hook_func(lambda t: typing.get_origin(t) is Literal, literal_hook)

    def frozen_map(value: Any, _t: type) -> FrozenMap:
        return freeze(expect_mapping(value, "keyword arguments"))

    conv.register_structure_hook(FrozenMap, frozen_map)
    conv.register_structure_hook_factory(is_var_tuple, var_tuple_factory(conv))
    conv.register_structure_hook_factory(
        lambda t: typing.get_origin(t) is dict, named_map_factory(conv)
    )
    conv.register_structure_hook_factory(is_union, union_factory(conv))
    conv.register_structure_hook_factory(attrs.has, lambda cls: _attrs_hook(conv, cls))
    conv.register_unstructure_hook_factory(
        attrs.has, lambda cls: _attrs_unhook(conv, cls, omit_defaults)
    )
    conv.register_unstructure_hook(
        FrozenMap,
        lambda m: {k: conv.unstructure(v) if attrs.has(type(v)) else thaw(v) for k, v in m.items()},
    )
    conv.register_unstructure_hook_func(
        lambda t: t is tuple, lambda v: [conv.unstructure(x) for x in v]
    )
    # Arrays have no YAML form: shown by their sizes (a run directory stores them as files).
    conv.register_unstructure_hook(
        S.Arrays,
        lambda a: {"kind": "arrays", "target_kind": a.target_kind, "rows": a.rows()},
    )
    return conv


def _public_fields(cls: type) -> list[attrs.Attribute]:
    return [f for f in attrs.fields(cls) if not f.metadata.get("internal")]


def _key(field: attrs.Attribute) -> str:
    """The YAML key of a field: its name, or `metadata["key"]` where the key is a Python
    keyword (`init.from`)."""
    return field.metadata.get("key", field.name)


def _attrs_hook(conv: cattrs.Converter, cls: type):
    fields = {_key(f): f for f in _public_fields(cls)}
    takes_args = cls in S.CALL_CLASSES
    shorthand = STRING_SHORTHAND.get(cls)
    noun = _MAPPING_NOUNS.get(cls, cls.__name__)
    as_text = {name for name, f in fields.items() if f.metadata.get("numbers_as_text")}

    def hook(value: Any, _t: type) -> Any:
        if shorthand and (isinstance(value, str) or _number(value) and shorthand in as_text):
            value = {shorthand: value}
        mapping = expect_mapping(value, noun)
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        problems: list[Diagnostic] = []
        for key, item in mapping.items():
            # A call class's `args` holds its free keys; `args:` in YAML merges into them.
            field = fields.get(key) if key != "args" or not takes_args else None
            if field is None:
                if takes_args and isinstance(key, str):
                    extra.update(
                        item if key == "args" and isinstance(item, Mapping) else {key: item}
                    )
                    continue
                hint = did_you_mean(str(key), [n for n in fields if n != "args"])
                problems.append(Diagnostic((key,), f"unknown key {key!r} in {noun}", hint=hint))
                continue
            if key in as_text:
                item = _numbers_as_text(item)
            try:
                converted = conv.structure(item, field.type)
            except Invalid as exc:
                problems += exc.under(key)
                continue
            try:
                if field.validator is not None:
                    field.validator(None, field, converted)
            except (ValueError, TypeError) as exc:
                problems.append(Diagnostic((key,), str(exc)))
                continue
            values[field.name] = converted
        for name, field in fields.items():
            if field.default is attrs.NOTHING and name not in mapping:
                problems.append(Diagnostic((), f"missing required key {name!r} in {noun}"))
        if problems:
            raise Invalid(problems)
        if takes_args:
            values["args"] = freeze(extra)
        return cls(**values)

    return hook


def _number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _numbers_as_text(value: Any) -> Any:
    """A name written as a number (a CSV column `5`) is its text; lists item by item."""
    if isinstance(value, list):
        return [str(v) if _number(v) else v for v in value]
    return str(value) if _number(value) else value


def _default_of(field: attrs.Attribute) -> Any:
    default = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        return default.factory()
    return default


_STRUCTURAL = {"name", "inputs", "outputs", "groups", "regularizers", "schedule"}
# A layer's structural options: absent unless written, in every dump.
_STRUCTURAL |= {"op", "blocks", "repeat", "first", "vary", "share", "tie", "when"}
# Fine-tuning options: absent unless written, in every dump (so older specs dump the same).
_ABSENT_BY_DEFAULT = {"trainable", "freeze", "freeze_norm_stats", "init_weights", "init", "relabel"}


def _attrs_unhook(conv: cattrs.Converter, cls: type, omit_defaults: bool):
    fields = _public_fields(cls)
    shorthand = STRING_SHORTHAND.get(cls)

    def hook(obj: Any) -> Any:
        out: dict[str, Any] = {}
        for field in fields:
            value = getattr(obj, field.name)
            if field.name == "args" and cls in S.CALL_CLASSES:
                continue  # written out as the call's own keys below
            is_tag = field.name in ("op", "kind")
            has_default = field.default is not attrs.NOTHING
            if omit_defaults and not is_tag and has_default and value == _default_of(field):
                continue
            if field.name in _STRUCTURAL and (value in (None, ()) or value == FrozenMap()):
                continue  # an absent name or empty edge list is not a default that could change
            if field.name in _ABSENT_BY_DEFAULT and value == _default_of(field):
                continue
            out[_key(field)] = conv.unstructure(value)
        if cls in S.CALL_CLASSES:
            # Keyword arguments read best right after what they configure.
            head = {k: out.pop(k) for k in ("op", "kind", "name", "inputs") if k in out}
            out = {**head, **thaw(obj.args), **out}
        if shorthand and list(out) == [shorthand]:
            only = out[shorthand]
            if isinstance(only, list) and len(only) == 1:
                only = only[0]  # a selector of one glob: `- conv1.*`
            if not isinstance(only, list):
                return only
        return out

    return hook


CONVERTER = make_converter()
# Spells out every default: for the run directory's spec, which must mean the same
# thing even if a later tdsl changes a default.
EXPLICIT_CONVERTER = make_converter(omit_defaults=False)


def structure_spec(data: Any) -> S.Spec:
    """Plain data -> Spec, raising `Invalid` with every problem found."""
    return CONVERTER.structure(data, S.Spec)


def unstructure(obj: Any, defaults: bool = False) -> Any:
    return (EXPLICIT_CONVERTER if defaults else CONVERTER).unstructure(obj)
