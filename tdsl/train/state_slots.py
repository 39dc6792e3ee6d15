"""Moving `TrainState`s in and out of a module's parameter slots.

The steps run torch's own modules and optimizers, which hold their tensors in parameter
slots and `optimizer.state`. `Slots.load` puts a state's tensors there (cloned, unless the
state is donated) and `Slots.snapshot` wraps what is there after a step as a new state. The
slots remember which state they hold, so a donated state that is already loaded — each
step of a training loop — costs nothing to load. A pure step whose optimizer update runs
out of place (`tdsl.pure_updates`) instead `borrow`s the state's parameters uncopied and
`adopt`s the new tensors the update makes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch

from tdsl.train.state import TrainState


def _clone(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.clone()


def _same(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


class Slots:
    def __init__(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer
        self.params = dict(module.named_parameters())
        self.buffers = dict(module.named_buffers())
        self.param_names = {id(p): n for n, p in self.params.items()}
        # The lease of the state whose tensors the slots hold right now; None after a cloning
        # load, whose tensors belong to no state yet.
        self.loaded: Any = None
        # Counts every time other tensors (or optimizer state dicts) go into the slots, so
        # compiled code knows what its guards saw is still there (`SteadyCalls`).
        self.generation = 0

    def hyper(self) -> tuple[dict[str, Any], ...]:
        """Each param group's hyperparameters, as the optimizer holds them now."""
        return tuple(
            {k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups
        )

    def load(self, state: TrainState, clone: bool) -> bool:
        """Put `state` into the slots; False when they already hold it."""
        if not clone and state.lease is self.loaded:
            return False
        self.loaded = None if clone else state.lease
        self.generation += 1
        take = _clone if clone else _same
        for name, buffer in self.buffers.items():
            buffer.data = take(state.buffers[name])
        self._load_params(state, take)
        return True

    def borrow(self, state: TrainState) -> None:
        """Put `state` into the slots for a step that only reads its parameters and makes new
        ones out of place: parameters go in as they are, buffers cloned (training forward
        passes update them in place), and the optimizer state stays in `state` for the update
        to read. Until `adopt`, the slots hold no state whole."""
        self.loaded = None
        self.generation += 1
        for name, param in self.params.items():
            param.data = state.params[name]
        for name, buffer in self.buffers.items():
            buffer.data = state.buffers[name].clone()
        self._load_hyper(state)

    def unborrow(self, state: TrainState) -> None:
        """Clone the borrowed `state`'s parameters and optimizer state into the slots, so
        torch's optimizer may update them in place after all; buffers stay as they are."""
        self.generation += 1
        self._load_params(state, _clone)

    def adopt(self, params: dict[str, torch.Tensor], optimizer: dict[str, dict[str, Any]]) -> None:
        """Hold the new parameters and optimizer state an out-of-place update made, where a
        cloning load and torch's in-place step would have left theirs."""
        self.generation += 1
        for name, param in self.params.items():
            param.data = params[name]
        self.optimizer.state = defaultdict(dict, {self.params[n]: s for n, s in optimizer.items()})

    def _load_params(self, state: TrainState, take: Callable[[torch.Tensor], torch.Tensor]) -> None:
        for name, param in self.params.items():
            param.data = take(state.params[name])
        self.optimizer.state = defaultdict(dict)
        for name, param_state in state.optimizer.items():
            self.optimizer.state[self.params[name]] = {
                k: take(v) if isinstance(v, torch.Tensor) else v for k, v in param_state.items()
            }
        self._load_hyper(state)

    def _load_hyper(self, state: TrainState) -> None:
        for group, hyper in zip(self.optimizer.param_groups, state.hyper, strict=True):
            group.update(hyper)

    def snapshot(self, state: TrainState, reloaded: bool, **changes: Any) -> TrainState:
        """The slots' tensors after a step on `state` (which `load` returned `reloaded` for),
        as a new state with `changes`; the slots now hold that state."""
        self.loaded = lease = type(state.lease)()
        names = self.param_names
        # Optimizers update parameters in place, so without a reload the state's dict already
        # names the right tensors. The per-parameter optimizer dicts are shared, not copied:
        # they were made fresh by the last cloning load or out-of-place update, or belong
        # to a donated state.
        params = {n: p.data for n, p in self.params.items()} if reloaded else state.params
        hyper = changes.pop("hyper", None)
        return TrainState(
            params=params,
            buffers={n: b.data for n, b in self.buffers.items()} if self.buffers else {},
            optimizer={names[id(p)]: s for p, s in self.optimizer.state.items()},
            hyper=self.hyper() if hyper is None else hyper,
            epoch=state.epoch,
            lease=lease,
            **changes,
        )
