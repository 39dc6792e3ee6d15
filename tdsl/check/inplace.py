"""Layers that overwrite their input (`inplace: true`) where the training step needs it.

torch lets `relu` or `dropout` write over its input to save memory, and fails only at the
first backward pass ("one of the variables needed for gradient computation has been
modified by an inplace operation") when the overwritten tensor was kept for a gradient:
the output of a `sigmoid`, `tanh`, `softmax`, `relu`... (their backward reads their own
output), or the input of a layer that reads the same value before. A layer reading it
afterwards gets the overwritten values without any error, and a model input overwritten is
the caller's batch itself: rows held in memory (a split batched in row order is sliced, not
copied) would change from one epoch to the next. The value may reach the layer
through views (`flatten`, `reshape`), block inputs and outputs, and repeats: all are
followed. What each layer keeps is asked of torch (`autograd_probe`), on meta tensors.
"""

from __future__ import annotations

from typing import Any

import attrs
from torch import nn

from tdsl.check.autograd_probe import Probe, probe
from tdsl.errors import Diagnostics
from tdsl.model.graph import Graph, Node


@attrs.frozen
class _Step:
    key: str  # the value it computes (module path)
    inputs: tuple[str, ...]  # the values it reads, each as the value it is an alias of
    layer: nn.Module
    node: Node
    reads: tuple[str, ...]  # its inputs as `values` keys, for the probe
    order: int
    kind: Any  # its module's op, arguments and torch's summary of it: the probe's cache key

    @property
    def title(self) -> str:
        op = f"shares {self.node.shares}" if self.node.shares else self.node.op
        return f"layer {self.key!r} ({op})"


def check_inplace(
    graph: Graph, module: nn.Module, values: dict[str, Any], diags: Diagnostics
) -> None:
    """An error at the `inplace` argument of each in-place layer whose overwrite breaks the
    gradient or changes what another layer reads."""
    if not any(getattr(m, "inplace", False) is True for m in module.modules()):
        return  # the usual case: nothing to follow
    flow = _Flow(module, values)
    flow.graph(graph, "")
    flow.model_inputs = set(graph.input_names)
    outputs = {flow.canon(o) for o in graph.outputs}
    for step in flow.steps:
        if getattr(step.layer, "inplace", False) is not True or not step.inputs:
            continue
        found = flow.probe(step)
        written = found.overwrites if found is not None else {0}
        for index in sorted(written):
            problem = flow.conflict(step, index, outputs)
            if problem is not None:
                shares = step.node.shares
                diags.error(
                    (*step.node.path, "share" if shares else "inplace"),
                    f"{step.title} has inplace: true, so it would overwrite {problem}",
                    f"set inplace: false on layer {shares or step.key!r}"
                    + (f", which {step.key!r} applies again" if shares else ""),
                )
                break


class _Flow:
    """The model's layers in the order they run, blocks and repeats opened up, each value
    named by its module path; a block's inputs and outputs are aliases of the values
    they are."""

    def __init__(self, module: nn.Module, values: dict[str, Any]):
        self.module, self.values = module, values
        self.steps: list[_Step] = []
        self.alias: dict[str, str] = {}
        self.producer: dict[str, _Step] = {}
        self.kinds: dict[str, Any] = {}  # module path -> its op and arguments
        self.grad: dict[str, bool] = {}  # value -> whether training needs its gradient
        self.model_inputs: set[str] = set()  # the batch's own tensors

    def canon(self, key: str) -> str:
        while key in self.alias:
            key = self.alias[key]
        return key

    def graph(self, graph: Graph, prefix: str) -> None:
        for node in graph.nodes:
            reads = tuple(prefix + s for s in node.inputs)
            self.node(node, prefix + node.name, reads, prefix)

    def node(self, node: Node, key: str, reads: tuple[str, ...], prefix: str) -> None:
        if node.shares is None:  # what makes two modules alike, for the probe's cache
            self.kinds[key] = (node.op, repr(sorted(node.args.items())))
        if node.copies:
            for copy in node.copies:
                copy_key = f"{key}.{copy.name}"
                self.node(copy, copy_key, reads, f"{key}.")
                reads = (copy_key, *reads[1:])  # each copy reads the one before
            self.alias[key] = reads[0]
        elif node.body is not None and node.shares is None:
            for name, read in zip(node.body.input_names, reads, strict=True):
                self.alias[f"{key}.{name}"] = self.canon(read)
            self.graph(node.body, f"{key}.")
            if len(node.body.outputs) == 1:
                self.alias[key] = f"{key}.{node.body.outputs[0]}"
        else:
            # A shared node runs the module of the node it shares, as one step.
            owner = prefix + node.shares if node.shares else key
            layer = self.module.get_submodule(owner)
            step = _Step(
                key,
                tuple(self.canon(r) for r in reads),
                layer,
                node,
                reads,
                len(self.steps),
                (self.kinds.get(owner), layer.extra_repr()),
            )
            self.steps.append(step)
            self.producer[key] = step
            # Autograd keeps nothing for a value no gradient flows to (a frozen trunk's).
            trains = any(p.requires_grad for p in layer.parameters())
            self.grad[key] = trains or any(self.grad.get(i, False) for i in step.inputs)

    def probe(self, step: _Step) -> Probe | None:
        if any(r not in self.values for r in step.reads):
            return None
        return probe(step.layer, [self.values[r] for r in step.reads], step.kind)

    def conflict(self, step: _Step, index: int, outputs: set[str]) -> str | None:
        """What `step` would overwrite in its input `index` that is needed, said for the
        message; or None."""
        target, hops = step.inputs[index], []
        shared = [target]  # the values whose memory the step overwrites
        while (producer := self.producer.get(target)) is not None:
            found = self.probe(producer)
            if found is None:
                break
            if found.saves_output and self.grad.get(producer.key, False):
                through = f", which reaches it through {', '.join(hops)}," if hops else ""
                return (
                    f"the output of {producer.title}{through} and that layer's gradient "
                    "needs its output: the first training step would fail"
                )
            if not found.aliases:
                break
            hops.append(producer.title)
            target = producer.inputs[min(found.aliases)]
            shared.append(target)
        if target in self.model_inputs:
            through = f" (reaching it through {', '.join(hops)})" if hops else ""
            return (
                f"the model's input {target!r}{through}, which is the batch itself: rows kept "
                "in memory would change, and the next epoch would read the overwritten values"
            )
        return self._readers(step, shared, outputs)

    def _readers(self, step: _Step, shared: list[str], outputs: set[str]) -> str | None:
        """Another layer reading the overwritten memory: before, keeping it for its
        gradient; after, reading overwritten values. Views taken of it count as it."""
        index = 0
        while index < len(shared):
            value = shared[index]
            index += 1
            if value in outputs:
                return f"{value!r}, which is a model output"
            for other in self.steps:
                if other is step or value not in other.inputs:
                    continue
                position = other.inputs.index(value)
                found = self.probe(other)
                if found is not None and position in found.aliases:
                    if other.key not in shared:
                        shared.append(other.key)  # a view: its readers read the same
                    continue
                if other.order > step.order:
                    return f"{value!r}, which {other.title} reads afterwards"
                kept = found is not None and position in found.saves_inputs
                if kept and self.grad.get(other.key, False):
                    return (
                        f"{value!r}, which {other.title} keeps for its gradient: the first "
                        "training step would fail"
                    )
        return None
