"""Parameter selectors shared by regularizers and param groups.

A selector picks parameters by glob on their names (`linear1.weight`, `*.bias`), by the
op or torch class of the layer that owns them (`linear`, `Conv2d`), minus `exclude`
globs; biases and normalization parameters are dropped unless `include_bias_and_norm`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Protocol

from torch import nn

from tdsl.wording import show

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


class Selector(Protocol):
    params: tuple[str, ...]
    modules: tuple[str, ...]
    exclude: tuple[str, ...]
    include_bias_and_norm: bool


def parameter_owners(module: nn.Module) -> dict[str, nn.Module]:
    """Parameter name -> the module that directly holds it. A tied parameter is held by two
    modules; it goes by its first name (`wte.weight`), as in `named_parameters()`."""
    owners, seen = {}, set()
    for owner_name, owner in module.named_modules():
        # `_parameters` directly: `named_parameters(recurse=False)` walks the module tree
        # again for each module, quadratic in a deep model's size.
        for param_name, param in owner._parameters.items():
            if param is not None and id(param) not in seen:
                seen.add(id(param))
                owners[f"{owner_name}.{param_name}" if owner_name else param_name] = owner
    return owners


def _op_of(name: str, ops: dict[str, str]) -> str:
    """The op of the innermost node that owns parameter `name` (`layer1.0.conv1.weight`)."""
    path = name
    while "." in path:
        path = path.rsplit(".", 1)[0]
        if path in ops:
            return ops[path]
    return ""


def select(selector: Selector, module: nn.Module, ops: dict[str, str]) -> list[str]:
    """Names of the parameters `selector` picks, in module order. `ops`: layer name -> op."""
    chosen = []
    for name, owner in parameter_owners(module).items():
        if not any(fnmatch.fnmatchcase(name, pattern) for pattern in selector.params):
            continue
        if selector.modules and not _module_matches(selector.modules, owner, _op_of(name, ops)):
            continue
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in selector.exclude):
            continue
        if not selector.include_bias_and_norm and (
            name.rsplit(".", 1)[-1].startswith("bias") or isinstance(owner, _NORM_TYPES)
        ):
            continue
        chosen.append(name)
    return chosen


def _module_matches(wanted: Iterable[str], owner: nn.Module, op: str) -> bool:
    names = {op.lower(), type(owner).__name__.lower()}
    return any(w.lower().removeprefix("nn.") in names for w in wanted)


def why_empty(selector: Selector, module: nn.Module, ops: dict[str, str]) -> str:
    """Which of the selector's filters left nothing, with the patterns as written."""

    owners = parameter_owners(module)
    patterns = show(list(selector.params))
    named = [n for n in owners if any(fnmatch.fnmatchcase(n, p) for p in selector.params)]
    if not named:
        return f"params {patterns} match none of the {len(owners)} parameter names"
    if selector.modules:
        named = [n for n in named if _module_matches(selector.modules, owners[n], _op_of(n, ops))]
        if not named:
            return f"params {patterns} match parameters, but none in modules " + show(
                list(selector.modules)
            )
    kept = [n for n in named if not any(fnmatch.fnmatchcase(n, p) for p in selector.exclude)]
    if not kept:
        excluded = show(list(selector.exclude))
        return f"exclude {excluded} removes every parameter that params {patterns} match"
    return (
        f"params {patterns} match only biases and normalization parameters, which are skipped "
        "unless include_bias_and_norm: true"
    )
