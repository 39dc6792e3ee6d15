"""`--cost`: memory, FLOPs and data of a training run, estimated with nothing allocated.

Parameters, gradients and optimizer state are counted from the meta module; activations
and FLOPs come from one training step traced on meta tensors (`tdsl.check.cost_trace`).
Tracing imports `FlopCounterMode`, which loads torch's compiler stack (about a second), so
plain validation never imports this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from tdsl import spec as S
from tdsl.check.cost_trace import LayerCost, forward_flops, trace_step
from tdsl.check.pipeline import Inference
from tdsl.errors import TdslError
from tdsl.model.graph import module_ops
from tdsl.model.selectors import select
from tdsl.registry.refusals import refusal_hint

# Evaluation batches: as `tdsl.train.loops.eval_batch_size` (a test keeps the two equal).
EVAL_VALUES = 1 << 20


class CostError(TdslError):
    """The model cannot be traced on meta tensors, so its cost is unknown."""


@attrs.frozen
class Cost:
    """One training step's memory and FLOPs, and the run's data and FLOPs."""

    batch_size: int  # rows in one step (per process for ddp)
    eval_batch_size: int
    precision: str
    processes: int
    param_bytes: int
    grad_bytes: int
    optimizer: str
    optimizer_bytes: int | None  # None: unknown for this optimizer
    optimizer_state: str  # what the optimizer keeps per parameter
    extra_bytes: int  # autocast weight copies, the ddp gradient all-reduce buffer
    extra_note: str
    activation_bytes: int
    layers: tuple[LayerCost, ...]
    train_flops: int  # one training step, forward and backward
    eval_flops: int  # one evaluation batch
    train_rows: int | None
    val_rows: int | None
    epochs: int

    @property
    def step_bytes(self) -> int:
        """Memory of one training step (unknown optimizer state counted as none)."""
        fixed = self.param_bytes + self.grad_bytes + (self.optimizer_bytes or 0)
        return fixed + self.extra_bytes + self.activation_bytes

    @property
    def train_batches(self) -> int | None:
        if self.train_rows is None:
            return None
        return math.ceil(self.train_rows / (self.batch_size * self.processes))

    @property
    def eval_batches(self) -> int:
        return math.ceil((self.val_rows or 0) / self.eval_batch_size)

    @property
    def epoch_flops(self) -> int | None:
        if self.train_batches is None:
            return None
        # Each process runs its own share: the whole epoch's FLOPs are all processes'.
        return self.train_batches * self.train_flops * self.processes + (
            self.eval_batches * self.eval_flops
        )

    @property
    def run_flops(self) -> int | None:
        return None if self.epoch_flops is None else self.epoch_flops * self.epochs


def eval_batch_size(spec: S.Spec) -> int:
    if spec.train.eval_batch_size:
        return spec.train.eval_batch_size
    values_per_row = sum(math.prod(i.shape) for i in spec.model.inputs) or 1
    return max(4 * spec.train.batch_size, EVAL_VALUES // values_per_row)


def step_rows(spec: S.Spec, rows: Mapping[str, int] | None, processes: int = 1) -> int:
    """Rows one process takes in one training step: its share of the batch, or of the
    training rows when there are fewer."""
    batch = spec.train.batch_size
    if rows and rows.get("train"):
        batch = min(batch, rows["train"])
    return max(1, math.ceil(batch / processes))


def estimate(
    spec: S.Spec,
    inference: Inference,
    allow_imports: Sequence[str] = (),
    processes: int = 1,
    batch_size: int | None = None,
) -> Cost:
    """The cost of training `spec`, whose model `inference` built on meta (a valid spec).
    `processes`: data-parallel processes sharing each batch (ddp); `batch_size`: the rows of
    one process's step, by default its share of the spec's batch."""
    module, rows = inference.module, inference.rows
    assert module is not None and inference.graph is not None, "estimate needs a valid spec"
    batch = batch_size or step_rows(spec, rows, processes)
    params = list(module.parameters())  # each tied or shared parameter once
    trainable = [p for p in params if p.requires_grad]
    param_bytes = sum(p.nbytes for p in params)
    grad_bytes = sum(p.nbytes for p in trainable)
    state, optimizer_bytes = optimizer_memory(spec, inference)
    extra, notes = 0, []
    if spec.device.precision != "fp32":
        # Autocast keeps fp32 master weights and caches a 2-byte copy of each it casts.
        extra += sum(p.numel() * 2 for p in params if p.is_floating_point())
        notes.append(f"{spec.device.precision} weight copies")
    if spec.device.strategy == "ddp":
        extra += grad_bytes  # the flat buffer each gradient all-reduce sums into
        notes.append("ddp all-reduce buffer")
    eval_batch = eval_batch_size(spec)
    if rows and rows.get("val"):
        eval_batch = min(eval_batch, rows["val"])  # the batch evaluation really runs
    try:  # user code may do what meta tensors cannot (read a value)
        layers, train_flops = trace_step(spec, inference, batch, allow_imports)
        eval_flops = forward_flops(spec, inference, eval_batch, allow_imports)
    except Exception as exc:
        reason = refusal_hint(exc) or "user code read a value, which meta tensors do not hold"
        raise CostError(f"cannot trace a training step on meta tensors ({reason})") from None
    return Cost(
        batch_size=batch,
        eval_batch_size=eval_batch,
        precision=spec.device.precision,
        processes=processes,
        param_bytes=param_bytes,
        grad_bytes=grad_bytes,
        optimizer=spec.optimizer.kind,
        optimizer_bytes=optimizer_bytes,
        optimizer_state=state,
        extra_bytes=extra,
        extra_note=", ".join(notes),
        activation_bytes=sum(layer.activation_bytes for layer in layers),
        layers=layers,
        train_flops=train_flops,
        eval_flops=eval_flops,
        train_rows=rows.get("train") if rows else None,
        val_rows=rows.get("val", 0) if rows else None,
        epochs=spec.train.epochs,
    )


def optimizer_state(kind: str, args: Mapping[str, Any]) -> tuple[tuple[str, ...], bool] | None:
    """(the tensors shaped like each parameter that `kind` keeps, whether it keeps a step
    count tensor per parameter), or None for an optimizer whose state is not known here."""
    if kind in ("adam", "adamw"):
        return (
            "exp_avg",
            "exp_avg_sq",
            *(("max_exp_avg_sq",) if args.get("amsgrad") else ()),
        ), True
    if kind == "sgd":
        return (("momentum_buffer",) if args.get("momentum", 0) else ()), False
    if kind == "rmsprop":
        momentum = ("momentum_buffer",) if args.get("momentum", 0) else ()
        return ("square_avg", *momentum, *(("grad_avg",) if args.get("centered") else ())), True
    if kind == "adagrad":
        return ("sum",), True
    return None


def optimizer_memory(spec: S.Spec, inference: Inference) -> tuple[str, int | None]:
    """(what the optimizer keeps, its bytes) with each param group's own arguments."""
    module, opt = inference.module, spec.optimizer
    params = dict(module.named_parameters())
    ops = module_ops(inference.graph)
    groups, claimed = [], set()
    for group in opt.groups:  # as make_optimizer assigns them: first group that picks it
        names = [n for n in select(group, module, ops) if n not in claimed]
        claimed.update(names)
        groups.append(({**opt.args, **group.args}, names))
    groups.append((dict(opt.args), [n for n in params if n not in claimed]))
    total, kept = 0, set()
    for args, names in groups:
        found = optimizer_state(opt.kind, args)
        if found is None:
            return "unknown", None
        tensors, counts_steps = found
        kept.update(tensors)
        # Adagrad makes its state up front for every parameter it is given; the others at
        # the first step, for those with a gradient. Frozen ones are given to neither.
        held = [params[n] for n in names if params[n].requires_grad]
        total += sum(p.nbytes * len(tensors) + (4 if counts_steps else 0) for p in held)
    order = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "square_avg", "grad_avg", "sum")
    named = sorted(kept, key=lambda t: order.index(t) if t in order else 0)
    return ", ".join(named) or "none", total


@attrs.frozen
class Fit:
    """Whether one training step fits a memory budget, per process."""

    budget: int
    needed: int
    # The largest global batch_size that fits (None: not even one row does).
    largest_batch: int | None

    @property
    def fits(self) -> bool:
        return self.needed <= self.budget

    @property
    def headroom(self) -> int:
        return self.budget - self.needed


def memory_fit(
    spec: S.Spec,
    inference: Inference,
    cost: Cost,
    budget: int,
    allow_imports: Sequence[str] = (),
) -> Fit:
    """`cost` against `budget` bytes per process. Activations grow about linearly with the
    batch: a second trace at another size gives the line, and the largest batch it allows is
    traced again to make sure."""
    fixed = cost.step_bytes - cost.activation_bytes
    other = cost.batch_size * 2 if cost.batch_size == 1 else cost.batch_size // 2
    second = _activations(spec, inference, other, allow_imports)
    per_row = max(1.0, (cost.activation_bytes - second) / (cost.batch_size - other))
    base = cost.activation_bytes - per_row * cost.batch_size
    rows = int((budget - fixed - base) // per_row)
    for _ in range(8):  # not quite linear: step down until it fits
        if rows < 1 or fixed + _activations(spec, inference, rows, allow_imports) <= budget:
            break
        rows = int(rows * 0.95)
    largest = rows * cost.processes if rows >= 1 else None
    return Fit(budget, cost.step_bytes, largest)


def _activations(spec, inference, rows: int, allow_imports: Sequence[str]) -> int:
    layers, _ = trace_step(spec, inference, rows, allow_imports)
    return sum(layer.activation_bytes for layer in layers)
