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

import itertools
import operator
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.optim import optimizer as torch_optimizer
from torch.optim.adam import adam
from torch.optim.sgd import sgd

from tdsl.train.pure_updates import NUMBER_OPTIONS, OTHER_CODE

Tensors = list[torch.Tensor]


def adam_lists(group: dict[str, Any], states: Sequence[dict | None]) -> tuple[Tensors, ...] | None:
    """The state tensors `adam` takes besides parameters and gradients, for parameters
    whose state exists (None if one's does not: torch's step makes it)."""
    amsgrad = group["amsgrad"]
    for state in states:
        if state is None or "step" not in state or (amsgrad and "max_exp_avg_sq" not in state):
            return None
    return (
        [s["exp_avg"] for s in states],
        [s["exp_avg_sq"] for s in states],
        [s["max_exp_avg_sq"] for s in states] if amsgrad else [],
        [s["step"] for s in states],
    )


def _adam_has_state(group: dict[str, Any], state: dict | None) -> bool:
    return bool(state) and "step" in state


def sgd_lists(group: dict[str, Any], states: Sequence[dict | None]) -> tuple[list, ...] | None:
    """The momentum buffers `sgd` updates in place (None if one does not exist: torch's
    step starts it)."""
    if group["momentum"] == 0:
        return ([None] * len(states),)  # plain SGD keeps no state
    if any(state is None or "momentum_buffer" not in state for state in states):
        return None
    return ([s["momentum_buffer"] for s in states],)


def _sgd_has_state(group: dict[str, Any], state: dict | None) -> bool:
    return group["momentum"] == 0 or bool(state and "momentum_buffer" in state)


def adam_update(
    group: dict[str, Any], params: Tensors, grads: Tensors, lists: tuple, capturable: bool = False
) -> None:
    """What `Adam.step` (and AdamW's) runs on one group's parameters that have gradients,
    with the state tensors `_adam_lists` gathered, in torch's single-tensor implementation
    (also the compiled step's update)."""
    exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps = lists
    beta1, beta2 = group["betas"]
    adam(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        max_exp_avg_sqs,
        steps,
        amsgrad=group["amsgrad"],
        has_complex=False,
        beta1=beta1,
        beta2=beta2,
        lr=group["lr"],
        weight_decay=group["weight_decay"],
        eps=group["eps"],
        maximize=group["maximize"],
        foreach=False,  # what torch picks for CPU tensors when `foreach` is unset
        capturable=capturable,
        differentiable=False,
        fused=None,
        grad_scale=None,
        found_inf=None,
        decoupled_weight_decay=group.get("decoupled_weight_decay", False),
    )


def sgd_update(group: dict[str, Any], params: Tensors, grads: Tensors, lists: tuple) -> None:
    """What `SGD.step` runs on one group's parameters that have gradients, with the buffers
    `sgd_lists` gathered (also the compiled step's update)."""
    sgd(
        params,
        grads,
        lists[0],  # the buffers exist: sgd updates them in place, nothing to keep
        weight_decay=group["weight_decay"],
        momentum=group["momentum"],
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


# Exact classes only: a subclass may change what step() does. Each: whether a parameter's
# state exists, the state tensors its update takes, and the update.
_DIRECT: dict[type, tuple[Callable[..., bool], Callable[..., Any], Callable[..., None]]] = {
    torch.optim.Adam: (_adam_has_state, adam_lists, adam_update),
    torch.optim.AdamW: (_adam_has_state, adam_lists, adam_update),
    torch.optim.SGD: (_sgd_has_state, sgd_lists, sgd_update),
}
# torch's registries of step hooks for every optimizer (dicts it adds to in place).
_GLOBAL_PRE_HOOKS = getattr(torch_optimizer, "_global_optimizer_pre_hooks", None)
_GLOBAL_POST_HOOKS = getattr(torch_optimizer, "_global_optimizer_post_hooks", None)
_GRAD = operator.attrgetter("grad")
_SPARSE = operator.attrgetter("is_sparse")
_NONES = itertools.repeat(None)
_TENSOR = itertools.repeat(torch.Tensor)


def _with_gradients(params: Tensors, grads: list, lists: tuple) -> tuple[Tensors, Tensors, tuple]:
    """Only the parameters that have a gradient (torch's step skips the others), with their
    gradients and state tensors."""
    keep = [i for i, grad in enumerate(grads) if grad is not None]
    kept = tuple([tensors[i] for i in keep] if tensors else tensors for tensors in lists)
    return [params[i] for i in keep], [grads[i] for i in keep], kept


class DirectUpdate:
    """`update()` does what `optimizer.step()` does to the parameters' gradients.

    What the update takes besides the gradients (each group's parameters and their state
    tensors, which it updates in place) is gathered once per optimizer state dict (a load
    puts in a new one) and reused, so a step costs one Python call of tdsl's."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer
        self.direct = _DIRECT.get(type(optimizer))
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if any(p.device.type != "cpu" or p.is_complex() for p in params):
            self.direct = None
        if _GLOBAL_PRE_HOOKS is None or _GLOBAL_POST_HOOKS is None:  # another torch
            self.direct = None
        # The options torch's single-tensor code takes as numbers (`pure_updates`' list, of
        # several names: itemgetter gives a tuple).
        if self.direct is not None:
            self.numbers = operator.itemgetter(*NUMBER_OPTIONS[type(optimizer)])
        # (the optimizer state they came from, [(group, its params with state, the others,
        # the state tensors the update takes)])
        self.gathered: Any = None

    def _gather(self) -> Any:
        has_state, lists_of = self.direct[0], self.direct[1]
        state = self.optimizer.state
        groups = []
        for group in self.optimizer.param_groups:
            params, others = [], []
            for param in group["params"]:  # get: the defaultdict adds nothing
                (params if has_state(group, state.get(param)) else others).append(param)
            lists = lists_of(group, [state.get(p) for p in params])
            if lists is None:
                return None
            groups.append((group, params, others, lists))
        return state, groups

    def __call__(self) -> None:
        optimizer = self.optimizer
        if (
            self.direct is None
            or optimizer._optimizer_step_pre_hooks
            or optimizer._optimizer_step_post_hooks
            or _GLOBAL_PRE_HOOKS
            or _GLOBAL_POST_HOOKS
            or getattr(optimizer, "grad_scale", None) is not None
            or getattr(optimizer, "found_inf", None) is not None
        ):
            optimizer.step()
            return
        gathered = self.gathered
        if gathered is None or gathered[0] is not optimizer.state:
            gathered = self.gathered = self._gather()
        work: list | None = [] if gathered is not None else None
        for group, params, others, lists in gathered[1] if gathered is not None else ():
            grads = list(map(_GRAD, params))
            if not all(map(operator.is_not, grads, _NONES)):
                params, grads, lists = _with_gradients(params, grads, lists)
            if (
                # A parameter without state gets it in torch's step: left to it.
                any(map(operator.is_not, map(_GRAD, others), _NONES))
                or any(map(_SPARSE, grads))
                # What `pure_updates` covers: torch's single-tensor code on plain numbers.
                or any(map(group.get, OTHER_CODE))
                or any(map(isinstance, self.numbers(group), _TENSOR))
                or any(map(isinstance, group.get("betas", ()), _TENSOR))
            ):
                work = None
                break
            work.append((group, params, grads, lists))
        if work is None:
            optimizer.step()
            self.gathered = None  # it may have made state: gather again
            return
        with torch.no_grad():
            for group, params, grads, lists in work:
                if params:
                    self.direct[2](group, params, grads, lists)
