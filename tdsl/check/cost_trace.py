"""One training step traced on meta tensors: what autograd saves per layer, and FLOPs.

Activations are what autograd saves for backward, seen by
`torch.autograd.graph.saved_tensors_hooks` during a meta forward and loss; FLOPs are torch's
own `FlopCounterMode` count over the forward and backward (matmuls, convolutions and
attention; elementwise ops count as none).

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
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Sequence

import attrs
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from tdsl import spec as S
from tdsl.check.class_targets import class_axis
from tdsl.check.deferred_dynamo import dynamo_import_deferred
from tdsl.check.deferred_symbolic_shapes import symbolic_shapes_deferred
from tdsl.check.outputs_and_targets import data_signature
from tdsl.check.pipeline import Inference
from tdsl.check.repeat_scaling import Skips, identical_copies_skipped
from tdsl.model.build import example_inputs
from tdsl.model.modules import Repeated
from tdsl.registry.losses import build_loss

LOSS_ROW = "(loss)"


@attrs.frozen
class LayerCost:
    name: str
    activation_bytes: int
    train_flops: int


class _Saved:
    """Bytes autograd saves for backward, each storage once: per module running when it
    was saved (by id: the top-level layers and the copies of repeated ones), and under
    LOSS_ROW outside them all."""

    def __init__(self, module: torch.nn.Module):
        self.owned = {_storage(t) for t in (*module.parameters(), *module.buffers())}
        self.seen: set[int] = set()
        self.keep: list[torch.Tensor] = []  # alive till the end, so storages stay distinct
        self.running: list[int] = []
        self.bytes: dict[int | str, int] = defaultdict(int)

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = _storage(tensor)
        if storage not in self.owned and storage not in self.seen:
            self.seen.add(storage)
            self.keep.append(tensor)
            for key in self.running or (LOSS_ROW,):
                self.bytes[key] += tensor.untyped_storage().nbytes()
        return tensor

    def watch(self, modules) -> list:
        """Hooks attributing what `modules` save to them (remove them afterwards)."""
        hooks = []
        for watched in modules:
            hooks.append(watched.register_forward_pre_hook(self._enter))
            hooks.append(watched.register_forward_hook(self._leave, always_call=True))
        return hooks

    def _enter(self, module, _args) -> None:
        self.running.append(id(module))

    def _leave(self, _module, _args, _output) -> None:
        self.running.pop()


def _storage(tensor: torch.Tensor) -> int:
    """The identity of a tensor's storage, also on meta, where every data_ptr is 0: views
    and the unsafe chunks of one tensor (an LSTM's gates) have the same."""
    return tensor.untyped_storage()._cdata


class FusedAttention(TorchFunctionMode):
    """`scaled_dot_product_attention` on meta tensors as the fused kernel runs it."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        # With attention dropout torch's CPU dispatch takes the math path, as meta does: its
        # saved attention matrices are what a CPU step keeps (a CUDA flash kernel keeps less).
        dropout = kwargs.get("dropout_p", args[4] if len(args) > 4 else 0.0)
        if func is F.scaled_dot_product_attention and not kwargs.get("enable_gqa") and not dropout:
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
    target = data_signature(spec, allow_imports).target
    return tuple(inputs.values()), target


def _loss(spec, output, target: S.Target, allow_imports, names=()) -> torch.Tensor:
    """The spec's loss of `output` against a meta target, shaped as the steps shape it: a
    class per row, or per position (`[B, T]`) with the loss over positions; with several
    outputs, each against its own target."""
    if spec.loss.kind == "outputs":  # several outputs, each against its own target
        targets = data_signature(spec, allow_imports).targets
        items = output if isinstance(output, tuple) else (output,)
        named = {n: o.float() for n, o in zip(names, items, strict=True)}
        wanted = {}
        for term in spec.loss.terms:
            out = named[term.output]
            wanted[term.target_name] = (
                torch.zeros(out.shape[0], dtype=torch.int64, device="meta")
                if targets[term.target_name].kind == "class"
                else torch.empty_like(out)
            )
        return build_loss(spec.loss, allow_imports).to("meta")(named, wanted)
    output = output.float()
    class_dim = None
    if target.kind == "class":
        class_dim = class_axis(spec.loss, target, output.shape)[0]
        shape = (output.shape[0], *target.shape) if class_dim is not None else output.shape[:1]
        labels = torch.zeros(shape, dtype=torch.int64, device="meta")
    else:
        labels = torch.empty_like(output)
    return build_loss(spec.loss, allow_imports, class_dim).to("meta")(output, labels)


def trace_step(
    spec: S.Spec, inference: Inference, batch: int, allow_imports: Sequence[str] = ()
) -> tuple[tuple[LayerCost, ...], int]:
    """Per top-level layer (in graph order, then the loss): saved bytes and training
    FLOPs; and the step's total FLOPs."""
    module = inference.module
    inputs, target = _inputs_and_target(spec, inference, batch, allow_imports)
    saved = _Saved(module)
    copies = [copy for m in module.modules() if isinstance(m, Repeated) for copy in m]
    hooks = saved.watch([*module.children(), *copies])
    was_training = module.training
    module.train()
    try:
        with _tracing(module, inference) as (skips, counter):
            with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t):
                output = module(*inputs)
                loss = _loss(spec, output, target, allow_imports, inference.graph.outputs)
            loss.backward()
    finally:
        for hook in hooks:
            hook.remove()
        module.train(was_training)
        for param in module.parameters():
            param.grad = None
    flops = _flops_by_module(module, counter)
    layers = [  # a module applied twice (a shared layer) is one row, its first name's
        LayerCost(name, skips.full(child, saved.bytes), skips.full(child, flops))
        for name, child in module.named_children()
    ]
    total = counter.get_total_flops() + skips.extra(module, flops)
    layers.append(
        LayerCost(
            LOSS_ROW,
            saved.bytes.get(LOSS_ROW, 0),
            total - sum(layer.train_flops for layer in layers),
        )
    )
    return tuple(layers), total


@contextlib.contextmanager
def _tracing(module: torch.nn.Module, inference: Inference, full: bool = False):
    """The modes a cost trace runs in; yields (the copies skipped, torch's FLOP counter).
    `full`: run every copy of repeated layers (tests compare the two)."""
    skipping = (
        contextlib.nullcontext(Skips())
        if full or _FULL_TRACE
        else identical_copies_skipped(module, inference.graph)
    )
    with (
        dynamo_import_deferred(),
        symbolic_shapes_deferred(),
        skipping as skips,
        flop_counter() as counter,
        FusedAttention(),
    ):
        yield skips, counter


_FULL_TRACE = False  # tests set it to compare a full trace with the skipping one


def _flops_by_module(module: torch.nn.Module, counter) -> dict[int, int]:
    counts = counter.get_flop_counts()
    root = type(module).__name__
    return {
        id(m): sum(counts.get(f"{root}.{fqn}", {}).values())
        for fqn, m in module.named_modules()
        if fqn
    }


def forward_flops(
    spec: S.Spec, inference: Inference, batch: int, allow_imports: Sequence[str] = ()
) -> int:
    """FLOPs of one evaluation batch: the forward pass and the loss, without gradients."""
    module = inference.module
    inputs, target = _inputs_and_target(spec, inference, batch, allow_imports)
    was_training = module.training
    module.eval()
    try:
        with _tracing(module, inference) as (skips, counter), torch.no_grad():
            _loss(spec, module(*inputs), target, allow_imports, inference.graph.outputs)
    finally:
        module.train(was_training)
    return counter.get_total_flops() + skips.extra(module, _flops_by_module(module, counter))
