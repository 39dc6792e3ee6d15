"""`--cost`: memory, FLOPs and data of a training run, estimated with nothing allocated.

Parameters, gradients and optimizer state are counted from the meta module. Activations
and FLOPs come from running one training step (forward, loss, backward) on meta tensors at
the spec's batch size: activations are what autograd saves for backward, seen by
`torch.autograd.graph.saved_tensors_hooks`; FLOPs are torch's own `FlopCounterMode` count
(matmuls, convolutions and attention; elementwise ops count as none).

Meta tensors have no addresses (every data_ptr is 0), so saved tensors are deduplicated by
the identity of their storage object: a view, or one of the chunks of a tensor, counts its
whole storage once, whichever of them are saved (q, k and v split from one qkv projection
are one storage); a parameter, a buffer or a view of one is not an activation.
Meta tensors take the math path of `scaled_dot_product_attention`, which saves the whole
attention matrix; real devices run a fused kernel that saves q, k, v, the output and a
logsumexp. The trace runs the fused CPU kernel's meta implementation instead (the CUDA
kernels save the same), and counts its FLOPs with torch's formulas for fused attention.
LSTM and GRU layers are counted as their composite computation (matmuls per step): fused
oneDNN and cuDNN kernels take the same FLOPs but save other tensors, and torch's counter
does not see them.

Importing `FlopCounterMode` loads torch's compiler stack (about a second), so plain
validation never imports this module.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from tdsl import spec as S
from tdsl.check.outputs_and_targets import data_signature
from tdsl.check.pipeline import Inference
from tdsl.model.build import example_inputs
from tdsl.model.graph import module_ops
from tdsl.model.selectors import select
from tdsl.registry.losses import build_loss

LOSS_ROW = "(loss)"
# Evaluation batches: as `tdsl.train.loops.eval_batch_size` (a test keeps the two equal).
EVAL_VALUES = 1 << 20


@attrs.frozen
class LayerCost:
    name: str
    activation_bytes: int
    train_flops: int


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
    layers, train_flops = trace_step(spec, inference, batch, allow_imports)
    eval_batch = eval_batch_size(spec)
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
        eval_flops=forward_flops(spec, inference, eval_batch, allow_imports),
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
        # Adagrad makes its state up front for every parameter; the others at the first
        # step, for the parameters that have a gradient.
        held = [params[n] for n in names if opt.kind == "adagrad" or params[n].requires_grad]
        total += sum(p.nbytes * len(tensors) + (4 if counts_steps else 0) for p in held)
    order = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "square_avg", "grad_avg", "sum")
    named = sorted(kept, key=lambda t: order.index(t) if t in order else 0)
    return ", ".join(named) or "none", total


class _Saved:
    """Bytes autograd saves for backward, per top-level layer, each storage once."""

    def __init__(self, module: torch.nn.Module):
        self.owned = {_storage(t) for t in (*module.parameters(), *module.buffers())}
        self.seen: set[int] = set()
        self.keep: list[torch.Tensor] = []  # alive till the end, so storages stay distinct
        self.current = LOSS_ROW
        self.bytes: dict[str, int] = defaultdict(int)

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = _storage(tensor)
        if storage not in self.owned and storage not in self.seen:
            self.seen.add(storage)
            self.keep.append(tensor)
            self.bytes[self.current] += tensor.untyped_storage().nbytes()
        return tensor


def _storage(tensor: torch.Tensor) -> int:
    """The identity of a tensor's storage, also on meta, where every data_ptr is 0: views
    and the unsafe chunks of one tensor (an LSTM's gates) have the same."""
    return tensor.untyped_storage()._cdata


class FusedAttention(TorchFunctionMode):
    """`scaled_dot_product_attention` on meta tensors as the fused kernel runs it."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention and not kwargs.get("enable_gqa"):
            return _fused_attention(*args, **kwargs)
        return func(*args, **kwargs)


def _fused_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **_):
    if attn_mask is not None and attn_mask.dtype == torch.bool:  # as the CPU kernel takes it
        attn_mask = torch.zeros(attn_mask.shape, dtype=q.dtype, device=q.device).masked_fill(
            ~attn_mask, float("-inf")
        )
    fused = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    return fused(q, k, v, dropout_p, is_causal, attn_mask=attn_mask, scale=scale)[0]


def flop_counter():
    """torch's `FlopCounterMode`, also counting the fused CPU attention kernel (with the
    formulas torch has for the CUDA ones)."""
    from torch.utils.flop_counter import FlopCounterMode, flop_registry

    aten = torch.ops.aten

    def raw(formula):
        def count(*args, out_val=None, **kwargs):
            return formula(*args, out_val=out_val, **kwargs)

        count._get_raw = True  # already takes tensors: torch must not wrap it again
        return count

    fused = aten._scaled_dot_product_efficient_attention
    formulas = {
        aten._scaled_dot_product_flash_attention_for_cpu: raw(flop_registry[fused]),
        aten._scaled_dot_product_flash_attention_for_cpu_backward: raw(
            flop_registry[aten._scaled_dot_product_efficient_attention_backward]
        ),
    }
    return FlopCounterMode(display=False, custom_mapping=formulas)


def _inputs_and_target(spec, inference, batch, allow_imports):
    inputs = example_inputs(inference.graph, batch)
    kind = data_signature(spec, allow_imports).target.kind
    return tuple(inputs.values()), kind


def _loss(spec, output, kind, allow_imports) -> torch.Tensor:
    """The spec's loss of `output` against a meta target (as `Steps._target` shapes it)."""
    output = output.float()
    if kind == "class":
        target = torch.zeros(output.shape[0], dtype=torch.int64, device="meta")
    else:
        target = torch.empty_like(output)
    return build_loss(spec.loss, allow_imports).to("meta")(output, target)


def trace_step(
    spec: S.Spec, inference: Inference, batch: int, allow_imports: Sequence[str] = ()
) -> tuple[tuple[LayerCost, ...], int]:
    """Per top-level layer (in graph order, then the loss): saved bytes and training
    FLOPs; and the step's total FLOPs."""
    module = inference.module
    inputs, kind = _inputs_and_target(spec, inference, batch, allow_imports)
    saved = _Saved(module)
    names = {id(m): n for n, m in reversed(list(module.named_children()))}  # first name wins

    def enter(layer, _args):
        saved.current = names[id(layer)]

    hooks = [m.register_forward_pre_hook(enter) for m in module.children()]
    was_training = module.training
    module.train()
    try:
        with flop_counter() as counter, FusedAttention():
            with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t):
                output = module(*inputs)
                saved.current = LOSS_ROW
                loss = _loss(spec, output, kind, allow_imports)
            loss.backward()
    finally:
        for hook in hooks:
            hook.remove()
        module.train(was_training)
        for param in module.parameters():
            param.grad = None
    by_module = counter.get_flop_counts()
    total = counter.get_total_flops()
    layers = []
    for name in dict.fromkeys(n for n, _ in module.named_children()):
        flops = sum(by_module.get(f"{type(module).__name__}.{name}", {}).values())
        layers.append(LayerCost(name, saved.bytes.get(name, 0), flops))
    layers.append(
        LayerCost(
            LOSS_ROW,
            saved.bytes.get(LOSS_ROW, 0),
            total - sum(layer.train_flops for layer in layers),
        )
    )
    return tuple(layers), total


def forward_flops(
    spec: S.Spec, inference: Inference, batch: int, allow_imports: Sequence[str] = ()
) -> int:
    """FLOPs of one evaluation batch: the forward pass and the loss, without gradients."""
    module = inference.module
    inputs, kind = _inputs_and_target(spec, inference, batch, allow_imports)
    was_training = module.training
    module.eval()
    try:
        with flop_counter() as counter, FusedAttention(), torch.no_grad():
            _loss(spec, module(*inputs), kind, allow_imports)
    finally:
        module.train(was_training)
    return counter.get_total_flops()
