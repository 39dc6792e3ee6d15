"""`validate`: every problem in a spec in one pass, with nothing allocated.

Stages, each adding to one collector: load (YAML, types, ranges) -> graph (names, edges,
cycles) -> inference on the meta device (ops, arguments, shapes, dtypes) -> how the parts
fit (data, loss, metrics, optimizer, selectors, monitors, device). A section that fails to
load skips only the later checks that read it, and a broken layer only the layers after it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import attrs
import torch

from tdsl import spec as S
from tdsl.check import data_section as data_checks
from tdsl.check import devices as checks_device
from tdsl.check import outputs_and_targets as checks
from tdsl.check import training_setup as checks_setup
from tdsl.check.class_targets import check_position_tables
from tdsl.check.inplace import check_inplace
from tdsl.check.loss_fit import check_loss
from tdsl.check.per_output import check_outputs_training
from tdsl.check.silent_mistakes import check_silent_mistakes
from tdsl.check.weights_setup import check_weights
from tdsl.data.data_root import accepts_data_root
from tdsl.errors import Diagnostic, Diagnostics, Report
from tdsl.model.arguments import check_arguments
from tdsl.model.build import GraphModule, build_graph
from tdsl.model.freezing import freeze
from tdsl.model.graph import Graph, Node
from tdsl.model.resolve import auto_names, resolve
from tdsl.registry.aliases import suggest
from tdsl.registry.ops import BATCH, all_op_names, lookup
from tdsl.registry.user_code import ImportRefused
from tdsl.spec.load_dump import locate, read_sections
from tdsl.spec.origins import located_where_built
from tdsl.spec.partial import Sections


@attrs.frozen
class Inference:
    """What validation learned about the model: the meta module and every node's value."""

    graph: Graph | None
    module: GraphModule | None
    values: dict[str, Any]
    # Regularizer / param-group path -> the parameters its selector picked.
    selections: dict[str, tuple[str, ...]] = attrs.field(factory=dict)
    # Rows per split in use, where the data was read (or is generated).
    rows: dict[str, int] | None = None

    @property
    def output(self) -> Any:
        graph = self.graph
        if graph is None or not graph.outputs:
            return None
        if not graph.complete:  # an output that names no layer has no value to check
            layers = {n.name for n in graph.nodes} - graph.broken
            if not layers.issuperset(graph.outputs):
                return None
        outs = [self.values.get(name) for name in graph.outputs]
        return outs[0] if len(outs) == 1 else (None if None in outs else tuple(outs))


def infer(spec: S.Spec, diags: Diagnostics, allow_imports: Sequence[str] = ()) -> Inference:
    graph = resolve(spec.model, diags)
    if graph is None:
        _check_ops_only(spec.model, diags, allow_imports)
        return Inference(None, None, {})
    module, values = build_graph(graph, diags, allow_imports=allow_imports)
    if module is not None:
        freeze(spec.model, graph, module)  # the summary and cost see what trains
    return Inference(graph, module, values)


def _check_ops_only(model: S.Model, diags: Diagnostics, allow_imports: Sequence[str]) -> None:
    """When the graph cannot be resolved, still report unknown ops and arguments."""
    for index, (layer, name) in enumerate(zip(model.layers, auto_names(model.layers), strict=True)):
        if layer.op is None or layer.op in model.blocks:
            continue  # shared layers and block uses: their problems are the graph's
        path = ("model", "layers", index)
        try:
            op = lookup(layer.op, allow_imports)
        except ImportRefused as exc:
            diags.error((*path, "op"), exc.message, exc.hint)
            continue
        if op is None:
            diags.error(
                (*path, "op"),
                f"unknown op {layer.op!r}",
                suggest("op", layer.op, all_op_names()),
            )
        else:
            implicit = () if op.max_inputs == 0 else ("<previous>",)  # a source takes none
            node = Node(name, layer.op, layer.args, layer.inputs or implicit, path)
            check_arguments(node, op, diags)


def check_spec(
    spec: S.Spec,
    diags: Diagnostics,
    allow_imports: Sequence[str] = (),
    world_size: int | None = None,
    broken: frozenset[str] = frozenset(),
) -> Inference:
    """Every check whose sections are all there. A section in `broken` failed to convert
    (it is None in `spec`, its problems reported already): only the checks reading it are
    skipped, so a typo in `train` still leaves the model and the data checked."""

    def ok(*sections: str) -> bool:
        return broken.isdisjoint(sections)

    inference = infer(spec, diags, allow_imports) if ok("model") else Inference(None, None, {})
    graph = inference.graph
    if inference.module is not None and graph is not None:
        check_inplace(graph, inference.module, inference.values, diags)
    signature = checks.check_data(spec, diags, allow_imports) if ok("data") else None
    if ok("data", "model"):
        checks.check_random_ids(spec, graph, diags)
        check_position_tables(spec, graph, inference.values, diags)
    if ok("loss", "data"):
        check_loss(spec, graph, inference.output, diags, allow_imports)
    elif ok("loss"):
        checks.resolve_loss(spec.loss, diags, allow_imports)  # its own names and arguments
    metric_names = None
    if ok("metrics", "loss", "data"):
        metric_names = checks.check_metrics(spec, diags, graph)
    elif ok("metrics"):
        metric_names = checks.check_metric_kinds(spec.metrics, diags)
    if ok("optimizer"):
        checks_setup.check_optimizer(spec, diags)
    selections = {}
    if inference.module is not None and ok("loss", "optimizer"):
        selections = checks_setup.check_selectors(spec, graph, inference.module, diags)
    if inference.module is not None:
        selections |= check_weights(spec, graph, inference.module, diags)
    if metric_names is not None and ok("train", "optimizer"):  # data: for val_ monitors
        checks_setup.check_monitors(spec, metric_names, diags)
    if ok("device"):
        checks_device.check_device(spec, diags)
    if ok("train"):
        checks_setup.check_tensorboard(spec, diags)
    if ok("train", "device"):
        checks_setup.check_compile(spec, diags)
    if ok("loss", "train"):
        check_outputs_training(spec, diags)
    if ok("train", "device"):
        checks_device.check_distributed(spec, diags, world_size)
    rows = data_checks.split_rows(spec, signature) if ok("data") else None
    if ok("train", "optimizer", "data", "loss", "metrics"):
        check_silent_mistakes(spec, rows, diags)
    return attrs.evolve(inference, selections=selections, rows=rows)


@accepts_data_root
def validate(
    spec: S.Spec | str | os.PathLike,
    overrides: Any = None,
    allow_imports: Sequence[str] = (),
    world_size: int | None = None,
) -> Report:
    """Every problem with `spec` (a Spec, a YAML path, or YAML text). Never raises for a
    mistake in the spec; the report lists errors and warnings, located in the file.
    User code named by import path is imported only under the `allow_imports` prefixes.
    `world_size`: the number of processes that will train it (default: what a launcher
    such as torchrun says, else unknown)."""
    return checked(spec, overrides, allow_imports, world_size)[0]


def checked(
    spec: S.Spec | str | os.PathLike,
    overrides: Any = None,
    allow_imports: Sequence[str] = (),
    world_size: int | None = None,
) -> tuple[Report, Inference | None]:
    """`validate`, with what it learned (None when the spec could not be read)."""
    if isinstance(spec, S.Spec):
        return validated(spec, allow_imports, world_size)
    read = read_sections(spec, overrides)
    if read.spec is None:
        return Report(tuple(sorted(read.problems, key=_position))), None
    return validated(read.spec, allow_imports, world_size, read)


def validated(
    spec: S.Spec,
    allow_imports: Sequence[str] = (),
    world_size: int | None = None,
    read: Sections | None = None,
) -> tuple[Report, Inference]:
    """The report, and the inference behind it (which `compile` builds the module from).
    `read`: how the spec was read, when some of it did not convert (its problems join the
    report; the sections it names as broken are not checked)."""
    diags = Diagnostics()
    broken = read.broken if read is not None else frozenset()
    inference = check_spec(spec, diags, allow_imports, world_size, broken)
    located = [
        locate(d, spec.source) if spec.source is not None else located_where_built(d, spec)
        for d in diags.items
    ]
    if read is not None:
        located = [*read.problems, *located]
    shapes, params = {}, None
    if inference.module is not None and inference.graph is not None:
        shapes = {
            name: symbolic_shape(inference.values[name])
            for name in inference.graph.outputs
            if isinstance(inference.values[name], torch.Tensor)
        }
        params = sum(p.numel() for p in inference.module.parameters())
    report = Report(tuple(sorted(located, key=_position)), shapes, params, inference.selections)
    return report, inference


def symbolic_shape(value: torch.Tensor) -> tuple[int | None, ...]:
    """The shape with the batch dimension(s) as None."""
    return tuple(None if d == BATCH else int(d) for d in value.shape)


def _position(diagnostic: Diagnostic) -> tuple[int, int]:
    loc = diagnostic.location
    return (loc.line, loc.column) if loc else (0, 0)
