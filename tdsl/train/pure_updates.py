"""Optimizer updates that leave the old state's tensors alone, for the pure train step.

A pure step could clone every parameter and moment and then run torch's optimizer in
place; that costs a full extra copy each step. These updates instead only read the old
tensors, and each new tensor is produced by the update's own first operation on it
(`exp_avg.lerp(grad, w)` where torch runs `exp_avg.lerp_(grad, w)`). Each follows the
operation sequence of torch's single-tensor implementation, the one torch runs on the CPU
(`_single_tensor_sgd`, `_single_tensor_adam`), with the same kernels and the same Python
float scalars, so the results are bitwise torch's own. Optimizers, options and devices not
covered here get no `PureUpdate`, and the step clones and runs torch's optimizer as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

Hyper = Mapping[str, Any]  # one param group's options, as `TrainState.hyper` holds them
ParamState = dict[str, Any]  # one parameter's entry in `optimizer.state`
# (group options, parameter, gradient, its state or {}) -> (new parameter, new state or None
# when the optimizer keeps no state for it)
ParamUpdate = Callable[[Hyper, Tensor, Tensor, ParamState], tuple[Tensor, ParamState | None]]


# Group options under which torch's step runs other code than its single-tensor one.
OTHER_CODE = ("foreach", "fused", "capturable", "differentiable")
# Per optimizer, the options torch's single-tensor code takes as plain numbers (a tensor
# there, or in Adam's `betas`, takes other arithmetic).
NUMBER_OPTIONS: dict[type, tuple[str, ...]] = {
    torch.optim.SGD: ("lr", "momentum", "dampening", "weight_decay"),
    torch.optim.Adam: ("lr", "weight_decay", "eps"),
    torch.optim.AdamW: ("lr", "weight_decay", "eps"),
}


def _is_default_implementation(group: Hyper, scalars: Iterable[str]) -> bool:
    """Whether torch runs its single-tensor code on plain float hyperparameters for `group`
    (on the CPU: foreach and fused unset or off, nothing capturable or differentiable)."""
    if any(group.get(option) for option in OTHER_CODE):
        return False
    return not any(isinstance(group[name], Tensor) for name in scalars)


def _sgd_covers(group: Hyper) -> bool:
    return _is_default_implementation(group, NUMBER_OPTIONS[torch.optim.SGD])


def _sgd(group: Hyper, param: Tensor, grad: Tensor, old: ParamState):
    lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
    if group["maximize"]:
        grad = -grad
    if weight_decay != 0:
        grad = grad.add(param, alpha=weight_decay)
    if momentum == 0:
        return param.add(grad, alpha=-lr), None  # plain SGD keeps no state
    previous = old.get("momentum_buffer")
    if previous is None:  # the first step starts the buffer at the gradient
        buffer = grad.detach().clone()
    else:
        buffer = previous.mul(momentum).add_(grad, alpha=1 - group["dampening"])
    direction = grad.add(buffer, alpha=momentum) if group["nesterov"] else buffer
    return param.add(direction, alpha=-lr), {**old, "momentum_buffer": buffer}


def _adam_covers(group: Hyper) -> bool:
    if any(isinstance(beta, Tensor) for beta in group["betas"]):
        return False
    return _is_default_implementation(group, NUMBER_OPTIONS[torch.optim.Adam])


def _adam_start(param: Tensor, amsgrad: bool) -> ParamState:
    """What torch's Adam puts in a parameter's state before its first step."""
    # The step count lives on the CPU, in float64 only under a float64 default dtype.
    scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if amsgrad else ("exp_avg", "exp_avg_sq")
    zeros = {n: torch.zeros_like(param, memory_format=torch.preserve_format) for n in names}
    return {"step": torch.tensor(0.0, dtype=scalar, device="cpu"), **zeros}


def _adam(group: Hyper, param: Tensor, grad: Tensor, old: ParamState):
    """Adam, and AdamW through `decoupled_weight_decay`."""
    lr, weight_decay, amsgrad = group["lr"], group["weight_decay"], group["amsgrad"]
    beta1, beta2 = group["betas"]
    old = old or _adam_start(param, amsgrad)
    if group["maximize"]:
        grad = -grad
    step = old["step"] + 1
    decayed = weight_decay != 0 and group["decoupled_weight_decay"]
    if decayed:  # a fresh tensor, so the final update below may write into it
        param = param.mul(1 - lr * weight_decay)
    elif weight_decay != 0:
        grad = grad.add(param, alpha=weight_decay)
    exp_avg = old["exp_avg"].lerp(grad, 1 - beta1)
    exp_avg_sq = old["exp_avg_sq"].mul(beta2).addcmul_(grad, grad, value=1 - beta2)
    count = step.item()  # torch computes the bias corrections as Python floats
    step_size = lr / (1 - beta1**count)
    bias_correction2_sqrt = (1 - beta2**count) ** 0.5
    new = {**old, "step": step, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
    if amsgrad:
        new["max_exp_avg_sq"] = torch.maximum(old["max_exp_avg_sq"], exp_avg_sq)
    second_moment = new["max_exp_avg_sq"] if amsgrad else exp_avg_sq
    denom = (second_moment.sqrt() / bias_correction2_sqrt).add_(group["eps"])
    if decayed:
        return param.addcdiv_(exp_avg, denom, value=-step_size), new
    return param.addcdiv(exp_avg, denom, value=-step_size), new


# Exact classes only: a subclass may change what step() does.
_UPDATES: dict[type, tuple[ParamUpdate, Callable[[Hyper], bool]]] = {
    torch.optim.SGD: (_sgd, _sgd_covers),
    torch.optim.Adam: (_adam, _adam_covers),
    torch.optim.AdamW: (_adam, _adam_covers),
}


def _plain(values: Iterable[Any]) -> bool:
    """Whether these tensors are all dense and contiguous. An out-of-place result takes its
    layout from its inputs where torch's in-place one keeps its own; with mixed layouts the
    kernels could walk the elements differently (vectorized or not), and round differently."""
    tensors = (v for v in values if isinstance(v, Tensor))
    return all(not t.is_sparse and t.is_contiguous() for t in tensors)


def _cloned(param_state: ParamState) -> ParamState:
    return {k: v.clone() if isinstance(v, Tensor) else v for k, v in param_state.items()}


class PureUpdate:
    """Out-of-place steps of one optimizer over one module's parameters."""

    def __init__(self, optimizer: torch.optim.Optimizer, names: Mapping[int, str]):
        self.update, self.covers_group = _UPDATES[type(optimizer)]
        self.optimizer = optimizer
        self.names = names  # id(parameter) -> its name in the state

    def covers(self, hyper: Iterable[Hyper]) -> bool:
        """Whether these param-group options are ones this update reproduces exactly."""
        return all(self.covers_group(group) for group in hyper)

    @torch.no_grad()
    def __call__(
        self, params: Mapping[str, Tensor], optimizer: Mapping[str, ParamState]
    ) -> tuple[dict[str, Tensor], dict[str, ParamState]] | None:
        """New parameters and optimizer state by name from the old ones and the gradients the
        optimizer's parameters hold; None (nothing done) when a tensor is not `_plain`.
        Tensors the step does not change are cloned: a later donated step may write to them."""
        groups = self.optimizer.param_groups
        grads = [p.grad for g in groups for p in g["params"] if p.grad is not None]
        states = [v for entry in optimizer.values() for v in entry.values()]
        if not _plain([*grads, *params.values(), *states]):
            return None
        updated: dict[str, Tensor] = {}
        made: dict[str, ParamState] = {}
        for group in groups:
            for param in group["params"]:
                if param.grad is None:  # torch's step leaves the parameter alone
                    continue
                name = self.names[id(param)]
                old = optimizer.get(name, {})
                updated[name], entry = self.update(group, params[name], param.grad, old)
                if entry is not None:
                    made[name] = entry
        new_params = {n: updated[n] if n in updated else t.clone() for n, t in params.items()}
        # In torch's order: the entries loaded from the state, then the ones this step began.
        new_state = {n: made.pop(n) if n in made else _cloned(e) for n, e in optimizer.items()}
        return new_params, {**new_state, **made}


def pure_update_for(
    optimizer: torch.optim.Optimizer, module: torch.nn.Module, device: torch.device
) -> PureUpdate | None:
    """The out-of-place update for `optimizer`, or None where it could not match torch's own
    bitwise: other optimizers, devices other than the CPU (where torch's default is the
    foreach code), complex or non-floating-point parameters."""
    if type(optimizer) not in _UPDATES or device.type != "cpu":
        return None
    named = dict(module.named_parameters())
    if any(not p.is_floating_point() for p in named.values()):
        return None
    return PureUpdate(optimizer, {id(p): n for n, p in named.items()})
