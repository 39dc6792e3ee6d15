"""`summary`: the model as a table — node, op, output shape, parameters — from inference alone."""

from __future__ import annotations

import os
from collections.abc import Sequence

import attrs
import torch
from tabulate import tabulate

from tdsl import spec as S
from tdsl.check.pipeline import Inference, infer
from tdsl.check.training_setup import check_selectors
from tdsl.errors import Diagnostics, SpecError
from tdsl.model.node_build import describe
from tdsl.spec.load_dump import load, locate


@attrs.frozen
class Row:
    name: str
    op: str
    output: str
    trainable: int
    frozen: int


@attrs.frozen
class Summary:
    rows: tuple[Row, ...]
    trainable: int
    frozen: int
    buffers: int
    param_bytes: int

    @property
    def total(self) -> int:
        return self.trainable + self.frozen

    def table(self) -> str:
        body = [(r.name, r.op, r.output, f"{r.trainable:,}", f"{r.frozen:,}") for r in self.rows]
        headers = ("Layer", "Op", "Output shape", "Params", "Non-trainable")
        table = tabulate(
            body,
            headers=headers,
            tablefmt="simple",
            colalign=("left", "left", "left", "right", "right"),
        )
        footer = [
            f"Total params: {self.total:,}",
            f"Trainable params: {self.trainable:,}",
            f"Non-trainable params: {self.frozen:,}",
            f"Buffers: {self.buffers:,}",
            f"Params size (MB): {self.param_bytes / 2**20:.3f}",
        ]
        return table + "\n" + "\n".join(footer)

    def __str__(self) -> str:
        return self.table()


def inferred(spec: S.Spec | str | os.PathLike, allow_imports: Sequence[str], inference=None):
    """(spec, inference) for a spec whose model infers; raises `SpecError` otherwise.
    An `inference` already made for this spec is used as it is."""
    if not isinstance(spec, S.Spec):
        spec = load(spec)
    if inference is not None:
        return spec, inference
    diags = Diagnostics()
    inference = infer(spec, diags, allow_imports)
    if inference.module is None or inference.graph is None:
        raise SpecError([locate(d, spec.source) for d in diags.items])
    return spec, inference


def summarize(
    spec: S.Spec | str | os.PathLike,
    allow_imports: Sequence[str] = (),
    expand: bool = False,
    *,
    inference: Inference | None = None,
) -> Summary:
    """The summary of a valid spec's model; raises `SpecError` if the model does not infer.
    A block use, a repeated layer and a shared one are one row each (a parameter shared or
    tied is counted in the first row that holds it); `expand` adds a row per inner layer."""
    spec, inference = inferred(spec, allow_imports, inference)
    module = inference.module
    rows: list[Row] = []
    _rows(inference.graph, module, inference.values, "", expand, set(), rows)
    params = list(module.parameters())
    return Summary(
        rows=tuple(rows),
        trainable=sum(p.numel() for p in params if p.requires_grad),
        frozen=sum(p.numel() for p in params if not p.requires_grad),
        buffers=sum(b.numel() for b in module.buffers() if b.dtype != torch.int64),
        param_bytes=sum(p.numel() * p.element_size() for p in params),
    )


def _rows(graph, module, values, prefix: str, expand: bool, seen: set[int], rows: list[Row]):
    for node in graph.nodes:
        path = prefix + node.name
        op = f"{node.op} (shares {prefix}{node.shares})" if node.shares else node.op
        inner = expand and not node.shares and (node.copies or node.body is not None)
        _row(
            rows,
            module,
            values,
            path,
            f"{op} x{len(node.copies)}" if node.copies else op,
            seen,
            owns=not node.shares,
            count_as_seen=not inner,
        )
        if not inner:
            continue
        for copy in node.copies:
            copy_path = f"{path}.{copy.name}"
            if copy.body is None:
                _row(rows, module, values, copy_path, copy.op, seen)
            else:
                _row(rows, module, values, copy_path, copy.op, seen, count_as_seen=False)
                _rows(copy.body, module, values, copy_path + ".", expand, seen, rows)
        if node.body is not None:
            _rows(node.body, module, values, path + ".", expand, seen, rows)


def _row(rows, module, values, path, op, seen, owns=True, count_as_seen=True) -> None:
    """A row whose parameters are those not shown in an earlier row (shared or tied ones
    are counted once); a row with rows inside it shows its total but leaves them to those."""
    params = list(module.get_submodule(path).parameters()) if owns else []
    fresh = [p for p in params if id(p) not in seen]
    if count_as_seen:
        seen.update(id(p) for p in fresh)
    trainable = sum(p.numel() for p in fresh if p.requires_grad)
    frozen = sum(p.numel() for p in fresh if not p.requires_grad)
    rows.append(Row(path, op, describe(values[path]), trainable, frozen))


def parameter_table(
    spec: S.Spec | str | os.PathLike,
    allow_imports: Sequence[str] = (),
    *,
    inference: Inference | None = None,
) -> str:
    """One row per parameter: shape, size, and the param group and regularizers that pick it."""
    spec, inference = inferred(spec, allow_imports, inference)
    picked = check_selectors(spec, inference.graph, inference.module, Diagnostics())
    rows = []
    for name, param in inference.module.named_parameters():
        group = next((k for k, v in picked.items() if k.startswith("optimizer") and name in v), "")
        penalties = [
            f"{spec.loss.regularizers[int(k.split('[')[1][:-1])].kind}"
            for k, v in picked.items()
            if k.startswith("loss.regularizers") and name in v
        ]
        rows.append(
            (
                name,
                list(param.shape),
                f"{param.numel():,}",
                param.requires_grad,
                # Frozen parameters are in no param group: the optimizer never sees them.
                (group.removeprefix("optimizer.") or "default") if param.requires_grad else "-",
                ", ".join(penalties) or "-",
            )
        )
    headers = ("Parameter", "Shape", "Size", "Trainable", "Param group", "Regularizers")
    return tabulate(rows, headers=headers, tablefmt="simple", colalign=("left", "left", "right"))


def summary(
    spec: S.Spec | str | os.PathLike,
    params: bool = False,
    allow_imports: Sequence[str] = (),
    expand: bool = False,
    *,
    inference: Inference | None = None,
) -> str:
    """The summary table as text; with params, the per-parameter table after it; with
    expand, a row for every layer inside blocks and repeats. `inference`: the spec's
    model already inferred, to use instead of inferring it again."""
    spec, inference = inferred(spec, allow_imports, inference)
    text = summarize(spec, allow_imports, expand, inference=inference).table()
    if not params:
        return text
    return text + "\n\n" + parameter_table(spec, allow_imports, inference=inference)
