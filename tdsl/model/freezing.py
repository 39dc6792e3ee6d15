"""Which parameters a spec freezes, and freezing them on a built module.

A parameter is frozen when it sits inside a layer or block use written `trainable: false`
or when a `model.freeze` selector picks it. Frozen parameters get `requires_grad=False`:
no gradients, and the optimizer leaves them out. With `freeze_norm_stats`, the batch- and
instance-norm layers of the frozen part also keep their running statistics
(`fixed_norms`: the steps hold them in eval mode while training).
"""

from __future__ import annotations

from torch import nn

from tdsl import spec as S
from tdsl.model.graph import Graph, module_ops
from tdsl.model.selectors import parameter_owners, select


def untrainable_prefixes(graph: Graph, prefix: str = "") -> list[str]:
    """Module paths of the nodes written `trainable: false` (a shared node: the module it
    applies), blocks and repeated copies included."""
    found = []
    for node in graph.nodes:
        path = f"{prefix}{node.name}"
        if not node.trainable:
            found.append(f"{prefix}{node.shares}" if node.shares else path)
            continue
        for copy in node.copies:
            if copy.body is not None:
                found += untrainable_prefixes(copy.body, f"{path}.{copy.name}.")
        if node.body is not None:
            found += untrainable_prefixes(node.body, f"{path}.")
    return found


def _under(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def frozen_parameters(
    model: S.Model, graph: Graph, module: nn.Module
) -> tuple[list[str], list[tuple[str, ...]]]:
    """(the frozen parameter names in module order, what each `freeze` selector picked)."""
    ops = module_ops(graph)
    prefixes = untrainable_prefixes(graph)
    frozen = {name for name in parameter_owners(module) if _under(name, prefixes)}
    picked = []
    for selector in model.freeze:
        chosen = select(selector, module, ops)
        picked.append(tuple(chosen))
        frozen.update(chosen)
    return [name for name in parameter_owners(module) if name in frozen], picked


def freeze(model: S.Model, graph: Graph, module: nn.Module) -> list[str]:
    """Set `requires_grad` as the spec says; returns the frozen names."""
    frozen, _ = frozen_parameters(model, graph, module)
    chosen = set(frozen)
    for name, param in module.named_parameters():
        param.requires_grad_(name not in chosen)
    return frozen


def fixed_norms(model: S.Model, graph: Graph, module: nn.Module) -> list[str]:
    """With `freeze_norm_stats`: the norm layers with running statistics in the frozen part
    (all their parameters frozen, or, without parameters, inside an untrainable layer)."""
    if not model.freeze_norm_stats:
        return []
    frozen = set(frozen_parameters(model, graph, module)[0])
    prefixes = untrainable_prefixes(graph)
    found = []
    for name, sub in module.named_modules():
        if not isinstance(sub, nn.modules.batchnorm._NormBase):
            continue
        own = [f"{name}.{p}" for p, _ in sub.named_parameters(recurse=False)]
        if (own and all(n in frozen for n in own)) or (not own and _under(name, prefixes)):
            found.append(name)
    return found
