"""Fresh `TrainState`s: a program's starting weights from a seed (`Program.init`).

`init` builds the module again on the target device from the validated graph, inside a
forked RNG seeded with `seed`, so the weights are those a hand-written model defining the
same layers in order gets, and the caller's RNG is left alone. `compile` has just built the
same module from the spec's seed; for a small model on the CPU its weights are kept, and
`init` with the spec's seed clones them instead of building every layer again (most of a
small spec's `compile` + `init` after validation).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch

from tdsl import spec as S
from tdsl.errors import Diagnostics
from tdsl.model.build import build_graph, materialize
from tdsl.model.graph import Graph
from tdsl.train.randomness import seed_for
from tdsl.train.state import TrainState

# Models up to this many parameter and buffer values keep a copy of their starting weights.
FRESH_VALUES = 1 << 20

Weights = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]  # parameters, buffers


def kept_weights(module: torch.nn.Module, device: torch.device) -> Weights | None:
    """A copy of the weights `module` holds, when `init` may clone it: a small model on the
    CPU. On an accelerator building the layers also advances the device's RNG, which a
    state records, so `init` builds them there every time."""
    if device.type != "cpu":
        return None
    params, buffers = dict(module.named_parameters()), dict(module.named_buffers())
    if sum(t.numel() for t in (*params.values(), *buffers.values())) > FRESH_VALUES:
        return None
    return (
        {n: p.detach().clone() for n, p in params.items()},
        {n: b.detach().clone() for n, b in buffers.items()},
    )


class FreshStates:
    """`init(seed)` for one program. `module` is the one `compile` just built from the
    spec's seed (nothing has run on it yet); `values` the validated graph's meta values the
    layers are built from; `prepare` what init does to a new module (init_weights,
    model.init), which then is always built again."""

    def __init__(
        self,
        spec: S.Spec,
        graph: Graph,
        module: torch.nn.Module,
        device: torch.device,
        allow_imports: Sequence[str],
        values: dict[str, Any] | None,
        prepare: Callable[[torch.nn.Module], None] | None,
        hyper: tuple[dict[str, Any], ...],
        schedule: dict[str, Any] | None,
        scaler: torch.amp.GradScaler | None,
        layout: Callable[[torch.Tensor], torch.Tensor],
    ):
        self.spec, self.graph, self.device = spec, graph, device
        self.allow_imports = tuple(allow_imports)  # init() rebuilds the user's layers too
        self.values = values  # each node's meta value, from validation: init() builds from them
        self.prepare = prepare
        self.hyper, self.schedule, self.layout = hyper, schedule, layout
        # The loss scaler's state now, before any step: the steps train the same scaler
        # object, and a fresh state starts from its initial scale, not a trained one.
        self.scaler = copy.deepcopy(scaler.state_dict()) if scaler is not None else None
        kept = values is not None and prepare is None
        self.kept = kept_weights(module, device) if kept else None

    def __call__(self, seed: int) -> TrainState:
        if seed == self.spec.seed and self.kept is not None:
            params, buffers = self.kept
            return self._state(
                {n: self.layout(p.clone()) for n, p in params.items()},
                {n: b.clone() for n, b in buffers.items()},
                (torch.Generator().manual_seed(seed).get_state(),),
            )
        device = self.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            seed_for(device, seed)
            if self.values is not None:
                fresh = materialize(self.graph, self.values, device, self.allow_imports)
            else:
                fresh, _ = build_graph(
                    self.graph, Diagnostics(), device=device, allow_imports=self.allow_imports
                )
            if self.prepare is not None:
                self.prepare(fresh)
            rng_start = torch.Generator().manual_seed(seed).get_state()
            rng = (rng_start,) + (
                (torch.cuda.get_rng_state(device),) if device.type == "cuda" else ()
            )
        return self._state(
            {n: self.layout(p.detach()) for n, p in fresh.named_parameters()},
            {n: b.detach() for n, b in fresh.named_buffers()},
            rng,
        )

    def _state(
        self,
        params: dict[str, torch.Tensor],
        buffers: dict[str, torch.Tensor],
        rng: tuple[torch.Tensor, ...],
    ) -> TrainState:
        return TrainState(
            params=params,
            buffers=buffers,
            optimizer={},
            hyper=tuple(dict(h) for h in self.hyper),
            schedule=copy.deepcopy(self.schedule),
            step=0,
            epoch=0,
            rng=rng,
            scaler=copy.deepcopy(self.scaler),
        )
