"""Tied parameters (`tie: {weight: wte.weight}`): after building, the tying layer's
parameter is replaced by the very parameter it names, as nanoGPT ties `lm_head` to `wte`.
One tensor then is counted, optimized, regularized and saved once (`named_parameters()`
dedupes it; `tied_aliases` lists the second names)."""

from __future__ import annotations

from torch import nn

from tdsl.errors import Diagnostics
from tdsl.model.graph import Graph
from tdsl.wording import did_you_mean


def tie_parameters(
    graph: Graph, module: nn.Module, prefix: str, root: nn.Module, diags: Diagnostics
) -> bool:
    """Make each `tie` parameter the very parameter it names (as nanoGPT ties `lm_head`
    to `wte`): one tensor, counted, optimized and saved once."""
    ok = True
    for node in graph.nodes:
        if node.body is not None:
            ok = tie_parameters(node.body, module, f"{prefix}{node.name}.", root, diags) and ok
        for own, source in node.ties.items():
            where = (*node.path, "tie", own)
            names = dict(root.named_parameters())
            if node.copies:
                diags.error(where, "a repeated layer cannot tie its parameters", "tie one layer")
                ok = False
                continue
            if source not in names:
                diags.error(
                    where, f"no parameter {source!r} to tie to", did_you_mean(source, names)
                )
                ok = False
                continue
            owner_path, _, attr = f"{prefix}{node.name}.{own}".rpartition(".")
            owner = root.get_submodule(owner_path)
            mine = owner._parameters.get(attr)
            if mine is None:
                mine_names = [
                    n for n, _ in root.get_submodule(prefix + node.name).named_parameters()
                ]
                diags.error(
                    where,
                    f"layer {node.name!r} has no parameter {own!r}",
                    did_you_mean(own, mine_names),
                )
                ok = False
            elif mine.shape != names[source].shape:
                diags.error(
                    where,
                    f"cannot tie {own!r} {list(mine.shape)} to {source!r} "
                    f"{list(names[source].shape)}: the shapes differ",
                )
                ok = False
            else:
                setattr(owner, attr, names[source])
    return ok
