"""A fresh state's starting weights beyond the layers' own initialization: the spec's
`init_weights` entries in order, then the `model.init` checkpoint's tensors.

Both run inside `Program.init`'s seeded RNG, right after the module is built, so the same
seed gives the same weights. Validation has already matched the checkpoint to the model.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from tdsl import spec as S
from tdsl.check.weights_setup import init_path
from tdsl.model.graph import Graph, module_ops
from tdsl.model.init_from import (
    checkpoint_file,
    fit_weights,
    load_taken,
    model_state,
    read_tensors,
)
from tdsl.model.selectors import select
from tdsl.registry.initializers import apply_initializer, lookup_initializer


def initialize(model: S.Model, graph: Graph, module: nn.Module) -> None:
    """Apply `init_weights` to `module`, drawing from the global RNG."""
    ops = module_ops(graph)
    params = dict(module.named_parameters())
    for entry in model.init_weights:
        found = lookup_initializer(entry.kind)
        for name in select(entry, module, ops):
            apply_initializer(found, params[name], dict(entry.args))


def load_init(spec: S.Spec, module: nn.Module) -> None:
    """Copy the `model.init` checkpoint's chosen tensors into `module`."""
    init = spec.model.init
    tensors = read_tensors(checkpoint_file(init_path(spec), init.which))
    load_taken(module, fit_weights(init, model_state(module), tensors).taken)


def starting_weights(spec: S.Spec, graph: Graph) -> Callable[[nn.Module], None] | None:
    """What `Program.init` does to a freshly built module; None when nothing."""
    if not spec.model.init_weights and spec.model.init is None:
        return None

    def prepare(module: nn.Module) -> None:
        initialize(spec.model, graph, module)
        if spec.model.init is not None:
            load_init(spec, module)

    return prepare
