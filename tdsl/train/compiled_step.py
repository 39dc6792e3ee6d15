"""The opt-in compiled step (`train.compile: true`).

Forward, loss, regularizers, backward (`torch.func.grad`), clipping and, for SGD, Adam and
AdamW, the optimizer's update run as one `torch.compile` graph, so a small model's step is a
few fused kernels instead of dozens of separately dispatched ops. The update calls torch's
own functional optimizers (`torch.optim.adam.adam`, `torch.optim.sgd.sgd`) on the
optimizer's own state tensors, so states and checkpoints are the same as in eager steps.
Other optimizers get compiled gradients and run their usual eager `step()`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.func import functional_call

from tdsl import spec as S
from tdsl.errors import TdslError
from tdsl.train.compile_options import inductor_options, own_code
from tdsl.train.direct_updates import adam_lists, adam_update, sgd_lists, sgd_update
from tdsl.train.steady_calls import SteadyCalls, layout
from tdsl.wording import shorten


def _adam_update(group: dict[str, Any], params, grads, states) -> None:
    # Capturable: the bias corrections stay tensor arithmetic in the graph. Otherwise Adam
    # reads the step size as a Python number (`.item()` of the learning rate), which dynamo
    # then re-checks in a Python guard on every call. On CUDA the step counts live on the
    # host (torch's default), which capturable would refuse.
    capturable = all(s["step"].device == p.device for s, p in zip(states, params, strict=True))
    adam_update(group, params, grads, adam_lists(group, states), capturable=capturable)


def _sgd_update(group: dict[str, Any], params, grads, states) -> None:
    sgd_update(group, params, grads, sgd_lists(group, states))


def _adam_ready(group: dict[str, Any], states: Sequence[dict[str, Any]]) -> bool:
    return adam_lists(group, states) is not None


def _sgd_ready(group: dict[str, Any], states: Sequence[dict[str, Any]]) -> bool:
    return sgd_lists(group, states) is not None


# Optimizer class -> (its update on given tensors, whether its state tensors exist yet). Exact
# classes only: a subclass may change what step() does.
_UPDATES: dict[type, tuple[Callable[..., None], Callable[..., bool]]] = {
    torch.optim.Adam: (_adam_update, _adam_ready),
    torch.optim.AdamW: (_adam_update, _adam_ready),
    torch.optim.SGD: (_sgd_update, _sgd_ready),
}


def _as_inputs(
    group: dict[str, Any], slots: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A param group's hyperparameters for the compiled update, and those of them that are
    graph constants. The learning rate and Adam's beta1 (what schedules move) go in as float64
    tensors (see `_slot`), which torch's functional SGD and Adam take; the rest stay numbers.
    The tensors are the group's own `slots` (with the value each holds), kept on its
    parameters' device and refilled when the value changes (a kernel launch, not an
    allocation or a host-to-device copy). Most steps change none of the group's values: then
    the same pair as the last step's comes back, without being rebuilt."""
    values = list(group.values())
    last = slots.get("inputs")
    if last is not None and last[0] is group["params"]:
        try:
            if last[1] == values:  # the params lists are the same object: no tensor compared
                return last[2]
        except RuntimeError:  # a value that is a tensor of several elements: rebuild
            pass
    hyper = {k: v for k, v in group.items() if k != "params"}
    constants = dict(hyper)
    del constants["lr"]
    hyper["lr"] = _slot(slots, "lr", hyper["lr"], group)
    betas = hyper.get("betas")
    if betas is not None:
        hyper["betas"] = (_slot(slots, "beta1", betas[0], group), betas[1])
        constants["betas"] = betas[1]
    slots["inputs"] = (group["params"], values, (hyper, constants))
    return hyper, constants


def _slot(slots: dict[str, Any], key: str, value: Any, group: dict[str, Any]) -> Any:
    if isinstance(value, torch.Tensor):
        return value
    held = slots.get(key)
    if held is None:
        device = group["params"][0].device if group["params"] else torch.device("cpu")
        # One element rather than 0-d on the CPU: dynamo reads a 0-d float input as a
        # Python number (`.item()`) and re-checks it in a Python guard on every call. On
        # CUDA Adam's step counts live on the host, its update is not capturable and needs
        # the learning rate as a number: 0-d, as torch's optimizers hold it.
        shape = (1,) if device.type == "cpu" else ()
        tensor = torch.zeros(shape, dtype=torch.float64, device=device)
    else:
        tensor, filled = held
        if filled == value:  # most steps: no schedule moved it
            return tensor
    slots[key] = (tensor, value)
    return tensor.fill_(value)


class CompileError(TdslError):
    """torch refused to compile a training step (a model or an operation it cannot trace)."""


class CompiledStep:
    """`__call__(features, target)` runs one training step on the module's parameters in
    place and returns (output, data loss, regularizer terms); `ready()` says whether it can
    (the optimizer's state must exist: the first step of a run is eager)."""

    def __init__(
        self,
        module: torch.nn.Module,
        loss_fn: torch.nn.Module,
        regularizers: Sequence[tuple[str, Callable[..., torch.Tensor]]],
        optimizer: torch.optim.Optimizer,
        autocast: Callable[[], Any],
        train: S.Train,
        generation: Callable[[], int],
    ):
        """`generation()` counts the times other tensors went into the module's and the
        optimizer's slots (`Slots.generation`): see `SteadyCalls`."""
        self.module, self.loss_fn, self.optimizer = module, loss_fn, optimizer
        self.regularizers, self.autocast, self.train = tuple(regularizers), autocast, train
        # Only trainable parameters are differentiated; frozen ones go in as constants.
        named = {n: p for n, p in module.named_parameters() if p.requires_grad}
        self.frozen = {n: p for n, p in module.named_parameters() if not p.requires_grad}
        self.names = list(named)
        self.params = list(named.values())
        # Buffers a forward updates in place (batch norm's running statistics) cannot be
        # mutated inside torch.func.grad, which sees them as captured: the step works on
        # copies made inside it and writes them back after.
        self.buffers = dict(module.named_buffers())
        position = {id(p): i for i, p in enumerate(self.params)}
        self.groups = [[position[id(p)] for p in g["params"]] for g in optimizer.param_groups]
        self.update, self.is_ready = _UPDATES.get(type(optimizer), (None, None))
        mode = train.compile.mode if isinstance(train.compile, S.Compile) else "default"
        step, forward = own_code(self._step), own_code(self._evaluate)
        self.compiled = torch.compile(step, options=inductor_options(mode))
        # Hyperparameters a schedule moves go in as tensors, so a new value is new data for
        # the same graph; the others are constants of the graph, and if one changes after all
        # (one_cycle's SGD momentum) the update steps eagerly from then on instead of
        # recompiling every step.
        self.constants: list[dict[str, Any]] | None = None
        self.warm = False  # whether a compiled step has run (compile time is paid)
        self.slots: list[dict[str, Any]] = [{} for _ in optimizer.param_groups]
        self.compiled_forward = torch.compile(forward, options=inductor_options(mode))
        self.steady_step = SteadyCalls(self.compiled, generation, step)
        self.steady_forward = SteadyCalls(self.compiled_forward, generation, forward)
        self.ready_for: Any = None  # the optimizer state dict `ready()` last said yes to
        self.last_inputs: Any = None  # (optimizer state, _as_inputs pairs, update inputs)

    def evaluate(
        self, features: Sequence[torch.Tensor], target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The module's output and data loss, compiled together, for evaluation: one graph
        whatever the number of rows (the batch axis is symbolic), so a short last batch
        compiles nothing new."""
        for tensor in (*features, target):
            torch._dynamo.maybe_mark_dynamic(tensor, 0)
        signature = (self.module.training, layout((*features, target)))
        return self.steady_forward(signature, tuple(features), target)

    def _evaluate(self, features: tuple[torch.Tensor, ...], target: torch.Tensor) -> Any:
        with self.autocast():
            output = self.module(*features)
            return output, self.loss_fn(output.float(), target)

    def ready(self) -> bool:
        state = self.optimizer.state
        if self.is_ready is None or state is self.ready_for:
            return True  # a state dict, once ready, stays so: loads put in new dicts
        ready = all(
            self.is_ready(group, [state[self.params[i]] for i in indices])
            for group, indices in zip(self.optimizer.param_groups, self.groups, strict=True)
        )
        self.ready_for = state if ready else None
        return ready

    def __call__(self, features: Sequence[torch.Tensor], target: torch.Tensor):
        if self.update is None:
            grads, output, data_loss, terms, buffers = self._run(
                self.params, features, target, None
            )
            self.warm = True
            self._keep(buffers)
            for param, grad in zip(self.params, grads, strict=True):
                param.grad = grad
            self.optimizer.step()
            return output, data_loss, terms
        hypers = [
            _as_inputs(group, slots)
            for group, slots in zip(self.optimizer.param_groups, self.slots, strict=True)
        ]
        state = self.optimizer.state
        # The same pairs as the last step's and the same state dicts: the same inputs.
        last = self.last_inputs
        if last is not None and last[0] is state and all(map(operator.is_, last[1], hypers)):
            groups = last[2]
        else:
            constants = [c for _, c in hypers]
            if self.constants is None:
                self.constants = constants
            elif constants != self.constants:  # e.g. a cycled momentum: see __init__
                self.update = None
                return self(features, target)
            groups = [
                (hyper, [state[self.params[i]] for i in ix])
                for (hyper, _), ix in zip(hypers, self.groups, strict=True)
            ]
            self.last_inputs = (state, hypers, groups)
        _, output, data_loss, terms, buffers = self._run(self.params, features, target, groups)
        self.warm = True
        self._keep(buffers)
        return output, data_loss, terms

    def _run(self, params, features, target, groups) -> Any:
        # What the graph depends on besides the slots' tensors: which update it runs, the
        # module's mode and the batch's layout.
        signature = (groups is None, self.module.training, layout((*features, target)))
        if self.warm:
            return self.steady_step(signature, params, features, target, groups)
        try:  # the first call compiles: torch's refusal is a page of its internals
            return self.steady_step(signature, params, features, target, groups)
        except TdslError:
            raise
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CompileError(
                f"train.compile: torch could not compile this model's training step "
                f"({type(exc).__name__}: {shorten(first)}); train it with train.compile: false"
            ) from None

    def _keep(self, buffers: list[torch.Tensor]) -> None:
        if not buffers:
            return
        with torch.no_grad():
            for kept, new in zip(self.buffers.values(), buffers, strict=True):
                kept.copy_(new)

    def _loss(self, tensors, features, target):
        params = dict(zip(self.names, tensors, strict=True))
        buffers = {name: buffer.clone() for name, buffer in self.buffers.items()}
        with self.autocast():
            output = functional_call(
                self.module, {**self.frozen, **buffers, **params}, tuple(features)
            )
            data_loss = self.loss_fn(output.float(), target)
        terms = [term({**self.frozen, **params}) for _, term in self.regularizers]
        total = data_loss + sum(terms) if terms else data_loss
        detached = [t.detach() for t in terms]
        return total, (output.detach(), data_loss.detach(), detached, list(buffers.values()))

    def _clip(self, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        # The arithmetic of torch.nn.utils.clip_grad_norm_ / clip_grad_value_.
        if self.train.clip_norm is not None:
            total = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(g) for g in grads])
            )
            scale = torch.clamp(self.train.clip_norm / (total + 1e-6), max=1.0)
            grads = [g * scale for g in grads]
        if self.train.clip_value is not None:
            grads = [g.clamp(-self.train.clip_value, self.train.clip_value) for g in grads]
        return grads

    def _step(self, params, features, target, groups):
        grads, (output, data_loss, terms, buffers) = torch.func.grad(self._loss, has_aux=True)(
            params, features, target
        )
        grads = self._clip(list(grads))
        if groups is None:
            return grads, output, data_loss, terms, buffers
        with torch.no_grad():
            for (hyper, states), indices in zip(groups, self.groups, strict=True):
                self.update(
                    hyper, [params[i] for i in indices], [grads[i] for i in indices], states
                )
        return None, output, data_loss, terms, buffers
