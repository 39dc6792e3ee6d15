"""The optimizer's in-place update without `Optimizer.step`'s machinery.

`Optimizer.step` wraps every update in a profiler region, grad-mode switches and hook
checks, and scans each param group again to rebuild its argument lists and re-decide the
implementation (`foreach`, `fused`); on a one-layer model that is about a tenth of a whole
training step (callgrind). For SGD, Adam and AdamW in torch's default single-tensor
implementation on the CPU, once the optimizer's state exists, `DirectUpdate` calls the
functional update those steps call (`torch.optim.sgd.sgd`, `torch.optim.adam.adam`) with
the arguments they would pass, so the same kernels run in the same order and the results
are bitwise torch's. Anything else runs `optimizer.step()`: other optimizers (or
subclasses) and options, step hooks, gradient scaling, a parameter whose state does not
exist yet (the first step), sparse gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.optim import optimizer as torch_optimizer
from torch.optim.adam import adam
from torch.optim.sgd import sgd

Tensors = list[torch.Tensor]


def _adam(group: dict[str, Any], params: Tensors, grads: Tensors, states: Sequence[dict]):
    amsgrad = group["amsgrad"]
    beta1, beta2 = group["betas"]
    adam(
        params,
        grads,
        [s["exp_avg"] for s in states],
        [s["exp_avg_sq"] for s in states],
        [s["max_exp_avg_sq"] for s in states] if amsgrad else [],
        [s["step"] for s in states],
        amsgrad=amsgrad,
        has_complex=False,
        beta1=beta1,
        beta2=beta2,
        lr=group["lr"],
        weight_decay=group["weight_decay"],
        eps=group["eps"],
        maximize=group["maximize"],
        foreach=False,  # what torch picks for CPU tensors when `foreach` is unset
        capturable=False,
        differentiable=False,
        fused=None,
        grad_scale=None,
        found_inf=None,
        decoupled_weight_decay=group["decoupled_weight_decay"],
    )


def _adam_ready(group: dict[str, Any], state: dict[str, Any] | None) -> bool:
    if state is None or "step" not in state:
        return False
    return not group["amsgrad"] or "max_exp_avg_sq" in state


def _sgd(group: dict[str, Any], params: Tensors, grads: Tensors, states: Sequence[dict]):
    momentum = group["momentum"]
    # Plain SGD keeps no state.
    buffers = [s["momentum_buffer"] for s in states] if momentum != 0 else [None] * len(params)
    sgd(
        params,
        grads,
        buffers,
        weight_decay=group["weight_decay"],
        momentum=momentum,
        lr=group["lr"],
        dampening=group["dampening"],
        nesterov=group["nesterov"],
        maximize=group["maximize"],
        has_sparse_grad=False,
        foreach=False,
        fused=None,
        grad_scale=None,
        found_inf=None,
    )
    if momentum != 0:  # as SGD.step keeps them
        for state, buffer in zip(states, buffers, strict=True):
            state["momentum_buffer"] = buffer


def _sgd_ready(group: dict[str, Any], state: dict[str, Any] | None) -> bool:
    return group["momentum"] == 0 or (state is not None and "momentum_buffer" in state)


# Exact classes only: a subclass may change what step() does.
_DIRECT: dict[type, tuple[Callable[..., None], Callable[..., bool]]] = {
    torch.optim.Adam: (_adam, _adam_ready),
    torch.optim.AdamW: (_adam, _adam_ready),
    torch.optim.SGD: (_sgd, _sgd_ready),
}


def _default_group(group: dict[str, Any]) -> bool:
    """Torch's single-tensor code on the CPU: foreach and fused unset or off, nothing
    capturable or differentiable, plain number hyperparameters."""
    if group.get("foreach") or group.get("fused"):
        return False
    if group.get("capturable") or group.get("differentiable"):
        return False
    values = (group["lr"], *group.get("betas", ()))
    return not any(isinstance(v, torch.Tensor) for v in values)


class DirectUpdate:
    """`update()` does what `optimizer.step()` does to the parameters' gradients."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer
        self.direct = _DIRECT.get(type(optimizer))
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if any(p.device.type != "cpu" or p.is_complex() for p in params):
            self.direct = None

    def _covered(self) -> bool:
        optimizer = self.optimizer
        return not (
            optimizer._optimizer_step_pre_hooks
            or optimizer._optimizer_step_post_hooks
            or torch_optimizer._global_optimizer_pre_hooks
            or torch_optimizer._global_optimizer_post_hooks
            or getattr(optimizer, "grad_scale", None) is not None
            or getattr(optimizer, "found_inf", None) is not None
        )

    def __call__(self) -> None:
        if self.direct is None or not self._covered():
            self.optimizer.step()
            return
        update, ready = self.direct
        state = self.optimizer.state
        work = []
        for group in self.optimizer.param_groups:
            if not _default_group(group):
                self.optimizer.step()
                return
            params = [p for p in group["params"] if p.grad is not None]
            grads = [p.grad for p in params]
            states = [state.get(p) for p in params]  # get: the defaultdict adds nothing
            if not all(ready(group, s) for s in states) or any(g.is_sparse for g in grads):
                self.optimizer.step()  # makes the state, or refuses sparse gradients
                return
            work.append((group, params, grads, states))
        with torch.no_grad():
            for group, params, grads, states in work:
                if params:
                    update(group, params, grads, states)
