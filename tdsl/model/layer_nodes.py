"""What one layer spec becomes in a graph: a node of an op, a block use with a graph of its
own, copies of either (`repeat`, `first`, `vary`), or a node sharing another's module; with
a block use's arguments substituted for `$name` and `${...}` first.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import attrs

from tdsl import spec as S
from tdsl.errors import Diagnostics, SpecPath
from tdsl.model.block_args import BlockArgError, is_reference, substitute
from tdsl.model.graph import Node
from tdsl.registry import ops
from tdsl.registry.aliases import suggest
from tdsl.registry.user_code import is_import_path
from tdsl.wording import did_you_mean, show

# Repeats beyond this are a typo, not a model: inference builds every copy.
MAX_REPEAT = 4096


@attrs.frozen
class Scope:
    """Where layers are resolved: the model's blocks, the arguments of the block use being
    resolved (None at the top level) and the blocks being expanded (to find cycles)."""

    blocks: Mapping[str, S.Block]
    params: Mapping[str, Any] | None = None
    stack: tuple[str, ...] = ()


def substituted(layer: S.Layer, path: SpecPath, scope: Scope, diags: Diagnostics) -> S.Layer | None:
    """The layer with the block use's arguments in place of `$name` and `${...}`."""
    fields = {
        "op": layer.op,
        "args": layer.args,
        "repeat": layer.repeat,
        "when": layer.when,
        "first": layer.first,
        "vary": layer.vary,
    }
    changed, ok = {}, True
    for field, value in fields.items():
        if scope.params is None:
            for key, item in _references(value, field):
                diags.error(
                    (*path, *key),
                    f"{show(item)} refers to a block parameter, but this layer is not in a block",
                    "define the layer inside model.blocks, or write the value itself",
                )
                ok = False
            continue
        try:
            changed[field] = substitute(value, scope.params)
        except BlockArgError as exc:
            where = next((key for key, _ in _references(value, field)), (field,))
            diags.error((*path, *where), exc.message, exc.hint)
            ok = False
    op = changed.get("op", layer.op)
    if ok and op is not None and not isinstance(op, str):
        diags.error((*path, "op"), f"op must be a name (got {show(op)})")
        ok = False
    return attrs.evolve(layer, **changed) if ok else None


def _references(value: Any, field: str) -> list[tuple[tuple, str]]:
    """(key within the layer, the first `$...` text) for each place a field refers to a
    block parameter."""
    if field in ("op", "repeat", "when"):
        return [((field,), value)] if is_reference(value) else []
    found = []
    for key, item in value.items():
        text = _first_reference(item)
        if text is not None:
            found.append(((key,) if field == "args" else (field, key), text))
    return found


def _first_reference(value: Any) -> str | None:
    if is_reference(value):
        return value
    items = value.values() if isinstance(value, Mapping) else value
    if isinstance(value, Mapping | tuple | list):
        for item in items:
            found = _first_reference(item)
            if found is not None:
                return found
    return None


def switched_on(layer: S.Layer, path: SpecPath, diags: Diagnostics) -> bool:
    if isinstance(layer.when, bool):
        return layer.when
    diags.error((*path, "when"), f"when: must be true or false (got {show(layer.when)})")
    return True


def layer_node(
    layer: S.Layer,
    name: str,
    inputs: tuple[str, ...],
    path: SpecPath,
    scope: Scope,
    diags: Diagnostics,
) -> Node | None:
    if layer.share is not None:
        return _shared(layer, name, inputs, path, diags)
    if layer.op is None:
        diags.error(path, "a layer needs an op (or share: NAME to apply another layer again)")
        return None
    ties = dict(layer.tie)
    if layer.repeat is None:
        node = _one(layer.op, layer.args, name, inputs, path, scope, diags)
        return attrs.evolve(node, ties=ties) if node is not None and ties else node
    count = _repeat_count(layer, path, diags)
    if count is None:
        return None
    copies = []
    for index in range(count):
        args = dict(layer.args)
        if index == 0:
            args.update(layer.first)
        for key, values in layer.vary.items():
            args[key] = values[index]
        copy = _one(layer.op, args, str(index), inputs, path, scope, diags)
        if copy is None:
            return None
        copies.append(copy)
    return Node(name, layer.op, layer.args, inputs, path, copies=tuple(copies), ties=ties)


def _repeat_count(layer: S.Layer, path: SpecPath, diags: Diagnostics) -> int | None:
    count = layer.repeat
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_REPEAT:
        diags.error(
            (*path, "repeat"),
            f"repeat must be a whole number from 1 to {MAX_REPEAT} (got {show(count)})",
        )
        return None
    ok = True
    for key, values in layer.vary.items():
        if not isinstance(values, tuple) or len(values) != count:
            diags.error(
                (*path, "vary", key),
                f"vary.{key} needs one value per copy: {count} (got {show(values)})",
            )
            ok = False
    return count if ok else None


def _shared(
    layer: S.Layer, name: str, inputs: tuple[str, ...], path: SpecPath, diags: Diagnostics
) -> Node | None:
    extra = [k for k in ("op", "repeat") if getattr(layer, k) is not None]
    extra += [k for k in ("args", "first", "vary", "tie") if getattr(layer, k)]
    if extra:
        key = extra[0] if extra[0] != "args" else next(iter(layer.args))
        diags.error(
            (*path, key),
            f"layer {name!r} shares {layer.share!r}: its op, arguments and parameters are "
            f"{layer.share!r}'s",
            f"remove {key}",
        )
        return None
    return Node(name, "", {}, inputs, path, shares=layer.share)


def _one(
    op: str,
    args: Mapping[str, Any],
    name: str,
    inputs: tuple[str, ...],
    path: SpecPath,
    scope: Scope,
    diags: Diagnostics,
) -> Node | None:
    """A node of an op, or of a block use with its own graph."""
    block = scope.blocks.get(op)
    if block is None:
        if scope.blocks and not is_import_path(op) and ops.lookup(op) is None:
            # Said here, where the block names are known; building says it again, once.
            hint = suggest("op", op, [*scope.blocks, *ops.all_op_names()])
            diags.error((*path, "op"), f"unknown op {op!r}", hint)
        return Node(name, op, args, inputs, path)
    if op in scope.stack:
        cycle = " -> ".join((*scope.stack[scope.stack.index(op) :], op))
        diags.error((*path, "op"), f"block {op!r} uses itself: {cycle}")
        return None
    params = _block_params(op, block, args, path, diags)
    if params is None:
        return None
    if len(inputs) != len(block.inputs):
        diags.error(
            (*path, "inputs"),
            f"block {op!r} takes {len(block.inputs)} inputs ({', '.join(block.inputs)}), "
            f"got {len(inputs)}",
        )
        return None
    from tdsl.model.resolve import resolve_layers  # a block's layers resolve like the model's

    body = resolve_layers(
        block.layers,
        block.inputs,
        block.outputs,
        ("model", "blocks", op),
        Scope(scope.blocks, params, (*scope.stack, op)),
        diags,
    )
    return None if body is None else Node(name, op, args, inputs, path, body=body)


def _block_params(
    op: str, block: S.Block, args: Mapping[str, Any], path: SpecPath, diags: Diagnostics
) -> dict[str, Any] | None:
    ok, misspelled = True, set()
    for key in args:
        if key not in block.params:
            misspelled.update(difflib.get_close_matches(key, list(block.params), n=1, cutoff=0.6))
            hint = did_you_mean(key, block.params) or (
                f"block {op!r} takes: {', '.join(block.params)}" if block.params else None
            )
            diags.error((*path, key), f"block {op!r} has no parameter {key!r}", hint)
            ok = False
    for key, default in block.params.items():
        if default is None and key not in args and key not in misspelled:
            diags.error(path, f"block {op!r} needs its parameter {key!r}")
            ok = False
    return {**block.params, **args} if ok else None
