"""Block arguments inside a block's layers: `$name` and `${expression}`.

A block's layers refer to the arguments of each use: `out_channels: $channels` takes the
use's value as it is (any type), `out_channels: ${channels * 4}` computes one, and
`when: ${stride != 1 or downsample}` switches an optional part. Expressions are read with
`ast` and may use only the block's arguments, number and boolean literals, arithmetic
(`+ - * / // % **`), comparisons, `and`/`or`/`not` and `a if c else b`: nothing that
calls, imports or looks up attributes.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Mapping
from typing import Any

from tdsl.wording import did_you_mean, show

_REFERENCE = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
_EXPRESSION = re.compile(r"^\$\{(.*)\}$", re.S)

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


class BlockArgError(Exception):
    """A reference or expression that cannot be evaluated; `hint` says what to do."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint


def is_reference(value: Any) -> bool:
    """Whether `value` is written as `$name` or `${...}`."""
    return isinstance(value, str) and value.startswith("$")


def substitute(value: Any, params: Mapping[str, Any]) -> Any:
    """`value` with every `$name` and `${...}` in it (nested lists and maps too) evaluated."""
    if isinstance(value, str):
        return _evaluate_text(value, params) if value.startswith("$") else value
    if isinstance(value, tuple | list):
        return type(value)(substitute(v, params) for v in value)
    if isinstance(value, Mapping):
        return type(value)({k: substitute(v, params) for k, v in value.items()})
    return value


def _evaluate_text(text: str, params: Mapping[str, Any]) -> Any:
    match = _REFERENCE.match(text)
    if match:
        return _lookup(match[1], params)
    match = _EXPRESSION.match(text)
    if not match:
        raise BlockArgError(
            f"{show(text)} is neither $name nor ${{expression}}",
            "write $channels, or ${channels * 4} for a computed value",
        )
    try:
        tree = ast.parse(match[1].strip(), mode="eval")
    except SyntaxError:
        raise BlockArgError(f"cannot read the expression {show(text)}") from None
    return _evaluate(tree.body, params, text)


def _lookup(name: str, params: Mapping[str, Any]) -> Any:
    if name not in params:
        hint = did_you_mean(name, params) or (
            "the block's parameters: " + ", ".join(params) if params else "declare it in params"
        )
        raise BlockArgError(f"unknown block parameter ${name}", hint)
    return params[name]


def _number(value: Any, text: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BlockArgError(f"{show(text)}: arithmetic needs numbers, got {show(value)}")
    return value


def _evaluate(node: ast.AST, params: Mapping[str, Any], text: str) -> Any:
    if isinstance(node, ast.Name):
        return _lookup(node.id, params)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left = _number(_evaluate(node.left, params, text), text)
        right = _number(_evaluate(node.right, params, text), text)
        try:
            return _BINARY[type(node.op)](left, right)
        except ZeroDivisionError:
            raise BlockArgError(
                f"{show(text)} cannot be computed: it divides {show(left)} by 0"
            ) from None
        except OverflowError:
            raise BlockArgError(
                f"{show(text)} cannot be computed: the result is too large"
            ) from None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd | ast.Not):
        value = _evaluate(node.operand, params, text)
        if isinstance(node.op, ast.Not):
            return not value
        value = _number(value, text)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BoolOp):
        values = [_evaluate(v, params, text) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        left = _evaluate(node.left, params, text)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(right_node, params, text)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        chosen = node.body if _evaluate(node.test, params, text) else node.orelse
        return _evaluate(chosen, params, text)
    raise BlockArgError(
        f"{show(text)} uses something block expressions do not allow",
        "use the block's parameters, numbers, + - * / // % **, comparisons, and/or/not, "
        "and `a if condition else b`",
    )
