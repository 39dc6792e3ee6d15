"""A loss's arguments checked against their rules before torch runs the loss, each located at
the value written (inside a `kind: sum` term, at that term): torch words a bad `delta` as
"huber_loss does not support non-positive values for delta." and locates nothing.

Also where a loss that still fails on stand-in tensors is reported: at the term that fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from tdsl.errors import Diagnostics, SpecPath
from tdsl.registry.losses import lookup_loss
from tdsl.registry.ops import shape_text
from tdsl.registry.refusals import refusal_hint
from tdsl.wording import show

# Argument -> (the rule in words, whether a value keeps it). Names mean the same in every
# torch loss that takes them.
_RULES: dict[str, tuple[str, Callable[[float], bool]]] = {
    "delta": ("a number > 0", lambda v: v > 0),
    "beta": ("a number >= 0", lambda v: v >= 0),
    "label_smoothing": ("a number in [0, 1]", lambda v: 0 <= v <= 1),
    "eps": ("a number > 0", lambda v: v > 0),
    "gamma": ("a number >= 0", lambda v: v >= 0),
    "alpha": ("a number in [0, 1]", lambda v: 0 <= v <= 1),
}
_REDUCTIONS = ("mean", "sum", "none")


def check_loss_arguments(kind: str, args: Mapping[str, Any], path: SpecPath, diags: Diagnostics):
    """Report each argument of loss `kind` outside its rule; True when all keep them."""
    ok = True
    for key, value in args.items():
        if key == "reduction" and value not in _REDUCTIONS:
            diags.error(
                _arg_path(path, key),
                f"loss {kind!r} takes reduction "
                + " or ".join(show(r) for r in _REDUCTIONS)
                + f", got {show(value)}",
            )
            ok = False
            continue
        rule = _RULES.get(key)
        if rule is None:
            continue
        words, keeps = rule
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or not keeps(value):
            diags.error(
                _arg_path(path, key), f"loss {kind!r} takes {key} {words}, got {show(value)}"
            )
            ok = False
    return ok


def _arg_path(path: SpecPath, key: str) -> SpecPath:
    """Where a loss argument was written: a term's own `weight` is its share of the sum, so
    its class weights can only be under `args:`."""
    return (*path, "args", key) if key == "weight" and len(path) > 1 else (*path, key)


def check_weight_sizes(
    kind: str,
    args: Mapping[str, Any],
    path: SpecPath,
    classes: int | None,
    width: int,
    diags: Diagnostics,
) -> bool:
    """A class `weight` needs one number per class, a `pos_weight` one per output column (or
    one for all); torch says so without the numbers. True when the sizes fit."""
    checks = []
    if classes is not None:
        checks.append(("weight", (classes,), f"a number per class ({classes})"))
    else:
        checks.append(("pos_weight", (1, width), f"a number per output column ({width}) or one"))
    ok = True
    for key, sizes, wanted in checks:
        value = args.get(key)
        if isinstance(value, list | tuple) and len(value) not in sizes:
            diags.error(
                _arg_path(path, key),
                f"loss {kind!r} takes {key} with {wanted}, got {len(value)}: {show(list(value))}",
            )
            ok = False
    return ok


def run_each_term(
    loss: Any,
    sample: torch.Tensor,
    wanted: torch.Tensor,
    wrap: Callable[[torch.nn.Module], torch.nn.Module],
    diags: Diagnostics,
    allow_imports: Sequence[str],
    batch: int | None = None,
) -> bool:
    """Run a `kind: sum` loss's terms one by one on stand-ins; report a failing one at its
    path. True when every term ran."""
    ok = True
    for index, term in enumerate(loss.terms):
        try:
            wrap(lookup_loss(term.kind, allow_imports).build(term.args))(sample, wanted)
        except Exception as exc:  # torch's checks of the term's arguments and inputs
            path = ("loss", "terms", index)
            report_refusal(path, term.kind, term.args, sample, wanted, exc, diags, batch)
            ok = False
    return ok


def report_refusal(
    path: SpecPath,
    kind: str,
    args: Mapping[str, Any],
    sample: torch.Tensor,
    wanted: torch.Tensor,
    exc: BaseException,
    diags: Diagnostics,
    batch: int | None = None,
) -> None:
    """The loss at `path` could not run: its arguments, the shapes it got, torch's reason."""
    rows = sample.shape[0] if batch is None else batch
    with_args = f" with {show(dict(args))}" if args else ""
    diags.error(
        path,
        f"loss {kind!r}{with_args} cannot run on output {shape_text((rows, *sample.shape[1:]))} "
        f"and target {shape_text((rows, *wanted.shape[1:]))}: torch refused them",
        _CALLED_AS if _other_inputs(exc) else refusal_hint(exc),
    )


_CALLED_AS = "a loss is called with (output, target); this one takes other inputs"


def _other_inputs(exc: BaseException) -> bool:
    """Whether calling the loss with (output, target) failed on the number of arguments."""
    return isinstance(exc, TypeError) and "positional argument" in str(exc)
