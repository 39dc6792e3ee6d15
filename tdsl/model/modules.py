"""The modules a graph runs as: `GraphModule` for a graph (the model's, or a block use's)
and `Repeated` for the copies of a repeated layer.

Submodules are named after the nodes, so `state_dict` keys follow the spec
(`linear1.weight`, `layer1.0.conv1.weight` for copy 0 of a repeated block use), as a
hand-written model using the same names would have them. A shared node owns no module: it
runs the module of the node it shares, so its parameters exist, and are counted, once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from tdsl.model.graph import Graph

# Names a layer cannot have: submodules are attributes of the module holding them, so a
# layer named `train`, `_modules` or `_plan` would replace what torch or tdsl keeps there.
_OWN_ATTRIBUTES = ("_input_names", "_output_names", "_plan", "_chain")
RESERVED_NAMES = frozenset(dir(nn.Module)) | frozenset(vars(nn.Module())) | set(_OWN_ATTRIBUTES)


class GraphModule(nn.Module):
    def __init__(self, graph: Graph, layers: dict[str, nn.Module]):
        super().__init__()
        for name, layer in layers.items():
            self.add_module(name, layer)
        self._input_names = graph.input_names
        self._output_names = graph.outputs
        # (value name, the module that computes it, its inputs)
        self._plan = tuple((n.name, n.shares or n.name, n.inputs) for n in graph.nodes)
        # A plain chain (each node reads the one before, the last is the output) runs without
        # the name lookups, which cost more than tiny layers do.
        previous = self._input_names
        chain = bool(graph.nodes) and len(previous) == 1
        chain = chain and graph.outputs == (graph.nodes[-1].name,)
        for node in graph.nodes:
            chain = chain and tuple(node.inputs) == tuple(previous)
            previous = (node.name,)
        self._chain = tuple(layers[module] for _, module, _ in self._plan) if chain else None

    def forward(self, *inputs: Any) -> Any:
        if self._chain is not None:
            (value,) = inputs
            for layer in self._chain:
                value = layer(value)
            return value
        return self.apply_layers(_call, *inputs)

    def apply_layers(self, call: Callable[[nn.Module, list], Any], *inputs: Any) -> Any:
        """The forward pass with each layer applied by `call(layer, inputs)` (shape
        inference applies layers through their shape rules)."""
        values = dict(zip(self._input_names, inputs, strict=True))
        for name, module, sources in self._plan:
            values[name] = call(self._modules[module], [values[s] for s in sources])
        if len(self._output_names) == 1:
            return values[self._output_names[0]]
        return tuple(values[o] for o in self._output_names)


def _call(layer: nn.Module, inputs: list) -> Any:
    return layer(*inputs)


class Repeated(nn.ModuleList):
    """Copies applied in sequence: each takes the previous copy's output as its first input;
    any further inputs (an attention mask, say) go to every copy unchanged."""

    def forward(self, first: Any, *rest: Any) -> Any:
        value = first
        for copy in self:
            value = copy(value, *rest)
        return value

    def apply_layers(self, call: Callable[[nn.Module, list], Any], first: Any, *rest: Any) -> Any:
        value = first
        for copy in self:
            value = call(copy, [value, *rest])
        return value


def tied_aliases(module: nn.Module) -> set[str]:
    """Parameter names that are another name's parameter (`lm_head.weight` tied to
    `wte.weight`): states and checkpoints hold the first name only."""
    every = {n for n, _ in module.named_parameters(remove_duplicate=False)}
    return every - {n for n, _ in module.named_parameters()}


def load_weights(module: nn.Module, tensors: dict[str, Any]) -> None:
    """`module.load_state_dict(tensors)`, strict except for tied aliases, which follow the
    parameter they are."""
    missing, unexpected = module.load_state_dict(tensors, strict=False)
    missing = [n for n in missing if n not in tied_aliases(module)]
    if missing or unexpected:
        raise KeyError(f"weights do not fit the module: missing {missing}, unexpected {unexpected}")
