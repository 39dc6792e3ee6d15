"""`einsum`: torch.einsum of the inputs, its equation checked against them at validation.

The equation is parsed here, as torch reads it (letters a-z and A-Z, at most one `...` per
term, sizes that match or are 1, an implicit output of the letters used once, in ASCII
order, after the `...` dimensions), so a mistake is reported at `equation` with the input
it does not fit, and the output shape needs no run on meta.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tdsl.registry import op_checks as check
from tdsl.registry.meta_tensors import broadcast_shapes, meta
from tdsl.registry.ops import OpDef, OpError, register, shape_text
from tdsl.wording import show


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _error(message: str) -> OpError:
    return OpError(message, key="equation")


def _term(term: str, equation: str) -> tuple[str, int | None]:
    """The letters of one term and where its `...` sits (None without one)."""
    if term.count("...") > 1:
        raise _error(f"has {term!r} in equation {equation!r}: at most one '...' per term")
    letters = term.replace("...", "")
    bad = [c for c in letters if not ("a" <= c <= "z" or "A" <= c <= "Z")]
    if bad:
        raise _error(
            f"has {bad[0]!r} in equation {equation!r}; subscripts are letters a-z, A-Z and '...'"
        )
    return letters, (term.index("...") if "..." in term else None)


def einsum_shape(equation: str, shapes: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """The output shape of torch.einsum(equation, inputs of `shapes`), or a located OpError."""
    text = equation.replace(" ", "")
    lhs, arrow, rhs = text.partition("->")
    if "->" in rhs:
        raise _error(f"has more than one '->' in equation {equation!r}")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise _error(
            f"has equation {equation!r} with {_count(len(terms), 'operand')} but "
            f"{_count(len(shapes), 'input')}"
        )
    sizes: dict[str, int] = {}
    origin: dict[str, int] = {}  # the input each letter was first seen in
    ellipses = []
    for position, (term, shape) in enumerate(zip(terms, shapes, strict=True), 1):
        letters, at = _term(term, equation)
        rank = len(shape)
        if len(letters) > rank or (at is None and len(letters) != rank):
            raise _error(
                f"has term {term!r} ({len(letters)} subscripts) in equation {equation!r} for "
                f"input {position} {shape_text(shape)} of rank {rank}"
            )
        before = len(term[:at]) if at is not None else len(letters)
        after = len(letters) - before
        dims = [*shape[:before], *shape[rank - after :]]
        if at is not None:
            ellipses.append(tuple(shape[before : rank - after]))
        own: dict[str, int] = {}
        for letter, size in zip(letters, dims, strict=True):
            if own.setdefault(letter, size) != size:
                raise _error(
                    f"has {letter!r} twice in term {term!r} of equation {equation!r} with sizes "
                    f"{own[letter]} and {size} in input {position} {shape_text(shape)}"
                )
            known = sizes.setdefault(letter, size)
            first = origin.setdefault(letter, position)
            if known != size and 1 not in (known, size):
                raise _error(
                    f"has {letter!r} in equation {equation!r} of size {known} in input {first} "
                    f"and {size} in input {position}"
                )
            sizes[letter] = size if known == 1 else known  # a size 1 broadcasts
    try:
        middle = tuple(broadcast_shapes(*ellipses)) if ellipses else ()
    except RuntimeError:
        shown = ", ".join(shape_text(e) for e in ellipses)
        raise _error(f"has '...' dimensions that do not broadcast: {shown}") from None
    if not arrow:
        counts = Counter(c for term in terms for c in term.replace("...", ""))
        return (*middle, *(sizes[c] for c in sorted(c for c, n in counts.items() if n == 1)))
    letters, at = _term(rhs, equation)
    for letter in letters:
        if letter not in sizes:
            raise _error(f"has output subscript {letter!r} in no input of {equation!r}")
        if letters.count(letter) > 1:
            raise _error(f"has output subscript {letter!r} twice in {equation!r}")
    out = [sizes[c] for c in letters]
    split = len(rhs[:at]) if at is not None else len(out)
    return (*out[:split], *(middle if at is not None else ()), *out[split:])


class Einsum(nn.Module):
    """torch.einsum(equation, *inputs)."""

    def __init__(self, equation: str):
        super().__init__()
        self.equation = equation

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.einsum(self.equation, *xs)

    def meta_output(self, *xs: torch.Tensor) -> torch.Tensor:
        return meta(einsum_shape(self.equation, [x.shape for x in xs]), xs[0].dtype)

    def extra_repr(self) -> str:
        return repr(self.equation)


def _build(args: Mapping[str, Any], inputs: Sequence[Any]) -> nn.Module:
    xs = check.tensors(inputs)
    equation = args["equation"]
    if not isinstance(equation, str):
        raise _error(f"takes equation a string such as 'bij,bjk->bik', got {show(equation)}")
    einsum_shape(equation, [x.shape for x in xs])
    if len({x.dtype for x in xs}) > 1:
        kinds = ", ".join(str(x.dtype).removeprefix("torch.") for x in xs)
        raise OpError(f"needs inputs of one dtype, got {kinds}", hint="convert with op cast")
    return Einsum(equation)


register(
    OpDef(
        "einsum",
        _build,
        {"equation": True},
        min_inputs=1,
        max_inputs=None,
        doc="torch.einsum(equation, *inputs), e.g. 'bhqd,bhkd->bhqk'",
    )
)
