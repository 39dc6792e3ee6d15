"""`compile(spec) -> Program`: a real module plus pure step functions over `TrainState`.

Compilation validates the spec, builds the layer graph on the target device (seeded, so
initialization matches a hand-written model defining the same layers in order), and
assembles the optimizer, schedule, loss, regularizers and metrics the steps use.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
import torch
from torch import nn

from tdsl import spec as S
from tdsl.data import Batch, train_rows
from tdsl.data.data_root import accepts_data_root
from tdsl.errors import TdslError
from tdsl.model.build import GraphModule, materialize
from tdsl.model.freezing import fixed_norms, freeze
from tdsl.model.graph import module_ops
from tdsl.model.modules import load_weights, tied_aliases
from tdsl.model.selectors import select
from tdsl.registry.metrics import Metric
from tdsl.registry.optimizer_args import as_torch
from tdsl.registry.optimizers import lookup_optimizer, lookup_schedule
from tdsl.train.checked_specs import checked
from tdsl.train.distributed import World, connect
from tdsl.train.generation import generate
from tdsl.train.objective import make_objective
from tdsl.train.randomness import seed_for
from tdsl.train.starting_weights import starting_weights
from tdsl.train.state import TrainState
from tdsl.train.steps import Steps


def resolve_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def steps_per_epoch(spec: S.Spec, allow_imports: Sequence[str] = ()) -> int:
    return max(1, math.ceil(train_rows(spec, allow_imports) / spec.train.batch_size))


@attrs.frozen
class Program:
    """A compiled spec. `module` is a plain nn.Module; the steps are pure functions of
    (state, batch). The module's parameter slots are scratch space the steps load states into."""

    spec: S.Spec
    module: GraphModule
    device: torch.device
    metrics: tuple[Metric, ...]
    _steps: Any = attrs.field(repr=False)
    # The other processes of a data-parallel run (`tdsl.distributed.World`); None: alone.
    world: World | None = attrs.field(default=None, repr=False)

    def init(
        self,
        seed: int | None = None,
        *,
        from_module: nn.Module | None = None,
        from_state_dict: Mapping[str, torch.Tensor] | None = None,
    ) -> TrainState:
        """A fresh state: weights initialized from `seed` (default: the spec's), or taken
        by name from `from_module` (its `state_dict()`) or `from_state_dict`. Raises
        `WeightsError` listing missing, unexpected and mis-shaped entries."""
        state = self._steps.init(self.spec.seed if seed is None else seed)
        if from_module is not None and from_state_dict is not None:
            raise WeightsError("give from_module or from_state_dict, not both")
        given = from_module.state_dict() if from_module is not None else from_state_dict
        return state if given is None else self._with_weights(state, given)

    def _with_weights(self, state: TrainState, given: Mapping[str, torch.Tensor]) -> TrainState:
        aliases = tied_aliases(self.module)  # `nn.Module.state_dict()` has those keys too
        wanted = {n: t for n, t in self.module.state_dict().items() if n not in aliases}
        missing = [n for n in wanted if n not in given]
        unexpected = [n for n in given if n not in wanted and n not in aliases]
        misshaped = [
            f"{n} (the model's {list(t.shape)}, given {list(given[n].shape)})"
            for n, t in wanted.items()
            if n in given and tuple(given[n].shape) != tuple(t.shape)
        ]
        if missing or unexpected or misshaped:
            parts = [
                f"{what}: {_listed(names)}"
                for what, names in (
                    ("missing", missing),
                    ("unexpected", unexpected),
                    ("mis-shaped", misshaped),
                )
                if names
            ]
            raise WeightsError("the weights do not fit the model; " + "; ".join(parts))

        def taken(name: str, fresh: torch.Tensor) -> torch.Tensor:
            if name not in wanted:  # a buffer no state_dict holds (not persistent)
                return fresh
            value = torch.as_tensor(given[name]).detach()
            return value.to(device=fresh.device, dtype=fresh.dtype).clone()

        return attrs.evolve(
            state,
            params={n: taken(n, t) for n, t in state.params.items()},
            buffers={n: taken(n, t) for n, t in state.buffers.items()},
        )

    def train_step(self, state: TrainState, batch: Batch, donate: bool = False):
        """(state, batch) -> (new state, metrics). With donate=True the state's tensors are
        updated in place and `state` must not be used again."""
        return self._steps.train_step(state, batch, donate)

    @property
    def compile_pending(self) -> bool:
        """Whether the spec compiles its step and this program has not compiled it yet."""
        compiled = self._steps.compiled
        return compiled is not None and not compiled.warm

    def warmup(
        self, batch: Batch, state: TrainState | None = None, eval_batch: Batch | None = None
    ) -> float:
        """With `train.compile: true`, compile the training step now, on `batch` (from
        `state`, default a fresh one, which is left untouched), and the evaluation forward
        pass on `eval_batch`, instead of inside the first epoch; returns the seconds it took
        (0.0 when the spec does not compile, or this program compiled them already: the
        compiled code is kept for every later `fit` of the program)."""
        compiled = self._steps.compiled
        if compiled is None or compiled.warm:
            return 0.0
        started = time.perf_counter()
        state = self.init() if state is None else state
        batch = batch.to(self.device)
        # The compiled update needs the optimizer's state (Adam's moments), which the first,
        # eager step creates: the second step is the one that compiles.
        for _ in range(2):
            state, _ = self.train_step(state, batch)
        if eval_batch is not None:
            self.eval_step(state, eval_batch.to(self.device))
        return time.perf_counter() - started

    def eval_step(self, state: TrainState, batch: Batch) -> dict[str, Any]:
        return self._steps.eval_step(state, batch)

    def eval_batches(
        self, state: TrainState, batches: Iterable[Batch], add: Callable[[dict[str, Any]], None]
    ) -> None:
        """`eval_step` on each of `batches`, handing each one's metrics to `add` (one
        no-grad region and one load of `state` for them all)."""
        self._steps.eval_batches(state, batches, add)

    def predict_step(self, state: TrainState, features: tuple[torch.Tensor, ...]) -> Any:
        return self._steps.predict_step(state, features)

    @property
    def class_dim(self) -> int | None:
        """The output axis of the classes for class targets with positions (tokens)."""
        return self._steps.class_dim

    def generate(self, state: TrainState, ids: Any, n: int, **how: Any) -> torch.Tensor:
        """A language model's continuation: `ids` and `n` more tokens (greedy; or
        `temperature=`, `top_k=`, `seed=`). See `tdsl.train.generation.generate`."""
        return generate(self, state, ids, n, **how)

    def measure(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
        """Each metric's state over some rows, e.g. a step's `metrics["output"]` and
        `metrics["target"]`; `metric.compute(state)` gives the value, `metric.merge` adds
        the rows of two states."""
        return self._steps.measure(output, target)

    def end_epoch(self, state: TrainState, logs: dict[str, float]) -> TrainState:
        """Advance per-epoch schedules (reduce-on-plateau reads `logs`) and the epoch count."""
        return self._steps.end_epoch(state, logs)

    def module_for(self, state: TrainState) -> nn.Module:
        """A standalone copy of the module holding `state`'s weights, for plain inference."""
        module = copy.deepcopy(self.module)
        load_weights(module, state.model_state_dict())
        return module


class WeightsError(TdslError):
    """Starting weights that do not fit the compiled model."""


def _listed(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def make_optimizer(spec: S.Spec, module: GraphModule, ops: dict[str, str]) -> torch.optim.Optimizer:
    # Frozen parameters (requires_grad off) are left out of every param group.
    params = {n: p for n, p in module.named_parameters() if p.requires_grad}
    opt = spec.optimizer
    groups, claimed = [], set()
    for group in opt.groups:
        names = [n for n in select(group, module, ops) if n not in claimed and n in params]
        claimed.update(names)
        groups.append({"params": [params[n] for n in names], **as_torch(group.args)})
    rest = [p for n, p in params.items() if n not in claimed]
    if rest or not groups:
        groups.append({"params": rest})
    cls = lookup_optimizer(opt.kind).cls
    return cls(groups, lr=opt.lr, **as_torch(opt.args))


def make_scheduler(
    spec: S.Spec, optimizer: torch.optim.Optimizer, allow_imports: Sequence[str] = ()
):
    schedule = spec.optimizer.schedule
    if schedule is None:
        return None
    found = lookup_schedule(schedule.kind)
    args = dict(schedule.args)
    per_epoch = steps_per_epoch(spec, allow_imports) if schedule.interval == "step" else 1
    total = spec.train.epochs * per_epoch
    if "T_max" in found.arguments and "T_max" not in args:
        args["T_max"] = total
    if "total_steps" in found.arguments and "total_steps" not in args:
        args["total_steps"] = total
    if "max_lr" in found.arguments and "max_lr" not in args:
        args["max_lr"] = spec.optimizer.lr
    return found.cls(optimizer, **args)


def autocast_for(spec: S.Spec, device: torch.device):
    precision = spec.device.precision
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)


# The issue names the API `compile`; it shadows the builtin only inside this module.
@accepts_data_root
def compile(spec: S.Spec, allow_imports: Sequence[str] = ()) -> Program:  # noqa: A001
    """Check `spec` and build its program; raises `SpecError` listing every problem.
    User code named by import path is imported only under the `allow_imports` prefixes."""
    found = checked(spec, allow_imports)
    graph, values = found.graph, found.values
    world = connect(spec.device)  # a launched ddp process joins the others here
    device = world.device if world is not None else resolve_device(spec.device.name)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        seed_for(device, spec.seed)
        module = materialize(graph, values, device, allow_imports)
    freeze(spec.model, graph, module)
    ops = module_ops(graph)
    optimizer = make_optimizer(spec, module, ops)
    objective = make_objective(spec, graph, module, device, allow_imports, found.output)
    steps = Steps(
        spec,
        graph,
        module,
        device,
        optimizer,
        make_scheduler(spec, optimizer, allow_imports),
        objective,
        autocast_for(spec, device),
        allow_imports,
        world,
        values=values,
        prepare=starting_weights(spec, graph),
        fixed_norms=tuple(module.get_submodule(n) for n in fixed_norms(spec.model, graph, module)),
    )
    return Program(spec, module, device, objective.metrics, steps, world)
