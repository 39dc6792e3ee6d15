"""The JSON Schema (draft 2020-12) of spec files, for editors: `tdsl schema > tdsl-schema.json`.

It is generated from the attrs classes in `tdsl.spec` and the op, loss, metric, optimizer
and schedule registries, so it follows the language without being edited by hand. It
checks structure, types, ranges and names (ops, losses, metrics, optimizers, schedules,
devices; an op or loss may also be a torch class or an import path) and suggests keyword
arguments, but stays looser than tdsl: keyword arguments, ops in a model with blocks, and
everything that relates two places (split sums, shapes, names of layers, monitors) are
judged by `tdsl validate`.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable
from typing import Any, Literal

import attrs

from tdsl import spec as S
from tdsl.registry import initializers, losses, metrics, ops
from tdsl.registry import optimizers as optim
from tdsl.registry.optimizers import FILLED_SCHEDULE_ARGS
from tdsl.spec.convert import STRING_SHORTHAND
from tdsl.spec.frozen import FrozenMap

SCHEMA_ID = "https://tdsl.dev/schema/spec.json"
Schema = dict[str, Any]

_SCALARS = {bool: "boolean", int: "integer", float: "number", str: "string"}

# The spec's shared validators as JSON Schema keywords; any other validator is left to tdsl.
_VALIDATORS: dict[Callable[..., Any], Schema] = {
    S.positive: {"exclusiveMinimum": 0},
    S.non_negative: {"minimum": 0},
    S.at_most_one: {"maximum": 1},
    S.non_empty: {"minItems": 1},
    S.each_positive: {"items": {"exclusiveMinimum": 0}},
    S.row_count: {"exclusiveMinimum": 0, "maximum": S.MAX_GENERATED_ROWS},
}

# Class -> (the field that names a registry entry, every name to suggest, name -> entry).
_REGISTRIES: dict[type, tuple[str, Callable[[], list[str]], Callable[[str], Any]]] = {
    S.Layer: ("op", ops.all_op_names, ops.lookup),
    S.Loss: ("kind", losses.loss_names, losses.lookup_loss),
    S.LossTerm: ("kind", losses.loss_names, losses.lookup_loss),
    S.Metric: ("kind", metrics.metric_names, metrics.lookup_metric),
    S.Optimizer: ("kind", optim.optimizer_names, optim.lookup_optimizer),
    S.Schedule: ("kind", optim.schedule_names, optim.lookup_schedule),
    S.Initializer: ("kind", initializers.initializer_names, initializers.lookup_initializer),
}
# Names that reach any torch class: `nn.GELU`, `torch.nn.KLDivLoss`.
_TORCH_CLASS_NAMES = {
    S.Layer: r"^(torch\.)?nn\.[A-Za-z0-9_]+$",
    S.Loss: r"^(torch\.)?nn\.[A-Za-z0-9_]+Loss$",
}
_TORCH_CLASS_NAMES[S.LossTerm] = _TORCH_CLASS_NAMES[S.Loss]
# A class of the user's by import path, `pkg.module.Name` or `pkg.module:Name`, as
# `tdsl.registry.user_code.is_import_path` reads it (`nn.X` is torch's, above). Only ops and
# losses take one; every other name must be a registered one, so a typo is flagged.
IMPORT_PATH = r"^(?!(torch\.)?nn\.)[A-Za-z_]\w*(\.[A-Za-z_]\w*)*[.:][A-Za-z_]\w*$"
_IMPORTABLE = {S.Layer, S.Loss, S.LossTerm}
# Fields whose strings follow a pattern tdsl checks.
_PATTERNS = {(S.Device, "name"): f"^({S.DEVICE_NAME})$"}
# Required arguments that tdsl fills in when omitted (schedule lengths from train.epochs).
_FILLED = {S.Schedule: FILLED_SCHEDULE_ARGS}


def json_schema() -> Schema:
    """The schema of a whole spec file, with every class it uses under `$defs`."""
    defs: dict[str, Schema] = {}
    root = _class_schema(S.Spec, defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "tdsl spec",
        **root,
        "$defs": dict(sorted(defs.items())),
    }


def _type_schema(type_: Any, defs: dict[str, Schema]) -> Schema:
    if type_ in _SCALARS:
        return {"type": _SCALARS[type_]}
    if type_ is Any:
        return {}
    if type_ is FrozenMap:
        return {"type": "object"}
    origin, args = typing.get_origin(type_), typing.get_args(type_)
    if origin is Literal:
        return {"const": args[0]} if len(args) == 1 else {"enum": list(args)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(args[1], defs)}
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return {"type": "array", "items": _type_schema(args[0], defs)}
    if origin in (typing.Union, types.UnionType):
        return _union_schema(args, defs)
    if attrs.has(type_):
        if type_.__name__ not in defs:
            defs[type_.__name__] = {}  # reserved first, so a class that refers to itself ends
            defs[type_.__name__] = _class_schema(type_, defs)
        return {"$ref": f"#/$defs/{type_.__name__}"}
    raise TypeError(f"no JSON Schema for spec type {type_!r}")


def _union_schema(args: tuple[Any, ...], defs: dict[str, Schema]) -> Schema:
    members = [m for m in args if m is not type(None)]
    choices = [_type_schema(m, defs) for m in members]
    # A union of classes with a `Literal` kind is tagged by it (the data sources); the
    # converter then wants `kind` written even where the class has it as a default.
    tagged = all(_literal_kind(m) for m in members)
    if tagged:
        choices = [{**choice, "required": ["kind"]} for choice in choices]
    if len(members) < len(args):
        choices.append({"type": "null"})
    return {"oneOf" if tagged else "anyOf": choices}


def _literal_kind(cls: Any) -> bool:
    kind = attrs.fields_dict(cls).get("kind") if attrs.has(cls) else None
    return kind is not None and typing.get_origin(kind.type) is Literal


def _class_schema(cls: type, defs: dict[str, Schema]) -> Schema:
    attrs.resolve_types(cls)  # in case spec.py ever turns on postponed annotations
    is_call = cls in S.CALL_CLASSES
    comments = _field_comments(cls)
    properties: dict[str, Schema] = {}
    required: list[str] = []
    for field in attrs.fields(cls):
        # `args` holds a call class's extra keys; it is not a key of its own.
        if field.metadata.get("internal") or (is_call and field.name == "args"):
            continue
        prop = _type_schema(field.type, defs)
        for check in getattr(field.validator, "_validators", (field.validator,)):
            _merge(prop, _VALIDATORS.get(check, {}))
        if field.name in comments:
            prop["description"] = comments[field.name]
        key = field.metadata.get("key", field.name)  # `from` is a Python keyword
        if field.default is attrs.NOTHING:
            required.append(key)
        else:
            default = field.default
            if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                default = default.factory()
            prop["default"] = _json_value(default)
        if cls in _REGISTRIES and field.name == _REGISTRIES[cls][0]:
            prop = _name_schema(cls, prop)
        if (cls, field.name) in _PATTERNS:
            prop["pattern"] = _PATTERNS[cls, field.name]
        properties[key] = prop
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if not is_call:
        schema["additionalProperties"] = False
    if cls is S.Model:
        schema.update(_known_ops(defs))
    if cls in _REGISTRIES:
        schema["allOf"] = _argument_hints(cls, set(properties))
    shorthand = STRING_SHORTHAND.get(cls)
    if shorthand is not None:
        # `- relu`, `metrics: [accuracy]`, `device: cpu`: a bare string names the thing.
        schema = {"anyOf": [properties[shorthand], schema]}
    if cls.__doc__:
        schema = {"description": inspect.cleandoc(cls.__doc__), **schema}
    return schema


def _name_schema(cls: type, schema: Schema) -> Schema:
    """A registered name, a torch class or an import path where those are allowed. An op
    may also be a block of `model.blocks`: `Model` checks op names where it has none."""
    choices = _names(cls)
    if cls is S.Layer:
        choices = [*choices, {}]  # still suggests the names
    return {**schema, "anyOf": choices}


def _names(cls: type) -> list[Schema]:
    _, names, _ = _REGISTRIES[cls]
    choices: list[Schema] = [{"enum": names()}]
    if cls in _TORCH_CLASS_NAMES:
        choices.append(
            {"type": "string", "pattern": _TORCH_CLASS_NAMES[cls], "description": "a torch class"}
        )
    if cls in _IMPORTABLE:
        choices.append(
            {
                "type": "string",
                "pattern": IMPORT_PATH,
                "description": "your class by import path (allowed with --allow-import)",
            }
        )
    return choices


def _known_ops(defs: dict[str, Schema]) -> Schema:
    """Without blocks every layer's op is a known name (`op: relux` is flagged); with
    blocks, a name may be a block's, which a schema cannot tell from a typo."""
    defs["OpName"] = {"type": "string", "anyOf": _names(S.Layer)}
    known = {"$ref": "#/$defs/OpName"}
    layer = {
        "if": {"type": "string"},
        "then": known,
        "else": {"properties": {"op": known}},
    }
    return {
        "if": {"required": ["blocks"]},
        "else": {"properties": {"layers": {"items": layer}}},
    }


def _argument_hints(cls: type, fields: set[str]) -> list[Schema]:
    """One `if name is X then these keys` per registered name, for completion and hovers."""
    key, names, lookup = _REGISTRIES[cls]
    default = attrs.fields_dict(cls)[key].default
    hints = []
    for name in names():
        found = lookup(name)
        if found is None:
            continue
        filled = {*getattr(found, "inferred", ()), *_FILLED.get(cls, ())}
        arguments = {
            arg: {"description": _argument_text(cls, arg in filled, needed)}
            for arg, needed in found.arguments.items()
            if arg not in fields
        }
        doc = getattr(found, "doc", "") or getattr(getattr(found, "cls", None), "__name__", "")
        if doc:
            arguments[key] = {"description": doc}
        condition: Schema = {"properties": {key: {"const": name}}}
        if name != default:  # an omitted key means its default, which should still match
            condition["required"] = [key]
        hints.append({"if": condition, "then": {"properties": arguments}})
    return hints


def _argument_text(cls: type, filled: bool, required: bool) -> str:
    if filled:
        return (
            "inferred from the input when omitted" if cls is S.Layer else "filled in when omitted"
        )
    return "required" if required else "optional"


def _field_comments(cls: type) -> dict[str, str]:
    """`# ...` lines right above a field: spec.py documents fields that way."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    found, pending = {}, []
    for line in lines:
        text = line.strip()
        if text.startswith("#"):
            pending.append(text.lstrip("#").strip())
            continue
        match = re.match(r"(\w+)\s*:", text)
        if match and pending:
            found[match[1]] = " ".join(pending)
        pending = []
    return found


def _json_value(value: Any) -> Any:
    """A default as YAML would spell it: nested specs as mappings, tuples as lists."""
    if attrs.has(type(value)):
        return {
            f.name: _json_value(getattr(value, f.name))
            for f in attrs.fields(type(value))
            if not f.metadata.get("internal") and f.name != "args"
        }
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, FrozenMap):
        return {k: _json_value(v) for k, v in value.items()}
    return value


def _merge(schema: Schema, extra: Schema) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(schema.get(key), dict):
            _merge(schema[key], value)
        else:
            schema[key] = value
