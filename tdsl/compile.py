"""`compile(spec) -> Program`: a real module plus pure step functions over `TrainState`.

A step loads the state's tensors into the module's parameter slots (cloned, unless the
caller donates the state), runs torch's own optimizer and scheduler on them, and returns a
new state holding the results. So any torch.optim optimizer works unchanged, and the input
state is never modified.
"""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import attrs
import torch
from torch import nn

from tdsl import spec as S
from tdsl.build import GraphModule, build_graph
from tdsl.checks import data_signature
from tdsl.data import Batch
from tdsl.errors import Diagnostics, SpecError
from tdsl.losses import lookup_loss
from tdsl.metrics import Metric, lookup_metric, make_metric
from tdsl.optim import lookup_optimizer, lookup_schedule
from tdsl.select import select
from tdsl.state import TrainState
from tdsl.validate import validate


def resolve_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def steps_per_epoch(spec: S.Spec) -> int:
    data = spec.data
    rows = data.n_positive + data.n_negative if isinstance(data, S.Rings) else data.n
    return max(1, math.ceil(round(data.split.train * rows) / spec.train.batch_size))


def _regularizer(reg: S.Regularizer, params: list[nn.Parameter]) -> Callable[[], torch.Tensor]:
    # As in the seeds: L2 = weight * 0.5 * sum(p^2), L1 = weight * sum(|p|).
    def l1() -> torch.Tensor:
        return sum(p.abs().sum() for p in params)

    def l2() -> torch.Tensor:
        return 0.5 * sum(p.pow(2).sum() for p in params)

    if reg.kind == "l1":
        return lambda: reg.weight * l1()
    if reg.kind == "l2":
        return lambda: reg.weight * l2()
    return lambda: reg.weight * (reg.l1_ratio * l1() + (1 - reg.l1_ratio) * l2())


def _to_probabilities(expects: str, target_kind: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if expects == "logits":
        return torch.sigmoid if target_kind == "binary" else lambda x: torch.softmax(x, dim=-1)
    if expects == "log_probabilities":
        return torch.exp
    return lambda x: x


@attrs.frozen
class Program:
    """A compiled spec. `module` is a plain nn.Module; the steps are pure functions of
    (state, batch). The module's parameter slots are scratch space the steps load states into."""

    spec: S.Spec
    module: GraphModule
    device: torch.device
    metrics: tuple[Metric, ...]
    _engine: Any = attrs.field(repr=False)

    def init(self, seed: int | None = None) -> TrainState:
        return self._engine.init(self.spec.seed if seed is None else seed)

    def train_step(self, state: TrainState, batch: Batch, donate: bool = False):
        """(state, batch) -> (new state, metrics). With donate=True the state's tensors are
        updated in place and `state` must not be used again."""
        return self._engine.train_step(state, batch, donate)

    def eval_step(self, state: TrainState, batch: Batch) -> dict[str, Any]:
        return self._engine.eval_step(state, batch)

    def predict_step(self, state: TrainState, features: tuple[torch.Tensor, ...]) -> Any:
        return self._engine.predict_step(state, features)

    def end_epoch(self, state: TrainState, logs: dict[str, float]) -> TrainState:
        """Advance per-epoch schedules (reduce-on-plateau reads `logs`) and the epoch count."""
        return self._engine.end_epoch(state, logs)

    def module_for(self, state: TrainState) -> nn.Module:
        """A standalone copy of the module holding `state`'s weights, for plain inference."""
        module = copy.deepcopy(self.module)
        module.load_state_dict(state.model_state_dict())
        return module


class _Engine:
    def __init__(self, spec: S.Spec, graph, module: GraphModule, device: torch.device):
        self.spec, self.graph, self.module, self.device = spec, graph, module, device
        self.params = dict(module.named_parameters())
        self.buffers = dict(module.named_buffers())
        target = data_signature(spec.data).target
        self.target_kind = target.kind
        loss_def = lookup_loss(spec.loss.kind)
        self.loss_fn = loss_def.build(spec.loss.args).to(device)
        self.to_prob = _to_probabilities(loss_def.expects, target.kind)
        ops = {n.name: n.op for n in graph.nodes}
        self.regularizers = []
        counts: dict[str, int] = defaultdict(int)
        for reg in spec.loss.regularizers:
            counts[reg.kind] += 1
            name = reg.kind if counts[reg.kind] == 1 else f"{reg.kind}_{counts[reg.kind]}"
            chosen = [self.params[n] for n in select(reg, module, ops)]
            self.regularizers.append((name, _regularizer(reg, chosen)))
        self.optimizer = self._make_optimizer(ops)
        self.scheduler = self._make_scheduler()
        self.initial_hyper = self._hyper()
        self.initial_schedule = self.scheduler.state_dict() if self.scheduler else None
        self.metrics = tuple(
            make_metric(lookup_metric(m.kind), target.kind, m.args, target.num_classes)
            for m in spec.metrics
        )
        self.autocast = self._autocast()
        self.training: bool | None = None

    # --- construction ---------------------------------------------------------------------

    def _make_optimizer(self, ops: dict[str, str]) -> torch.optim.Optimizer:
        opt = self.spec.optimizer
        groups, claimed = [], set()
        for group in opt.groups:
            names = [n for n in select(group, self.module, ops) if n not in claimed]
            claimed.update(names)
            groups.append({"params": [self.params[n] for n in names], **group.args})
        rest = [p for n, p in self.params.items() if n not in claimed]
        if rest or not groups:
            groups.append({"params": rest})
        cls = lookup_optimizer(opt.kind).cls
        return cls(groups, lr=opt.lr, **opt.args)

    def _make_scheduler(self):
        schedule = self.spec.optimizer.schedule
        if schedule is None:
            return None
        found = lookup_schedule(schedule.kind)
        args = dict(schedule.args)
        per_epoch = steps_per_epoch(self.spec) if schedule.interval == "step" else 1
        total = self.spec.train.epochs * per_epoch
        if "T_max" in found.arguments and "T_max" not in args:
            args["T_max"] = total
        if "total_steps" in found.arguments and "total_steps" not in args:
            args["total_steps"] = total
        if "max_lr" in found.arguments and "max_lr" not in args:
            args["max_lr"] = self.spec.optimizer.lr
        return found.cls(self.optimizer, **args)

    def _autocast(self):
        precision = self.spec.device.precision
        if precision == "fp32":
            return contextlib.nullcontext
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return lambda: torch.autocast(self.device.type, dtype=dtype)

    # --- state <-> module slots -----------------------------------------------------------

    def _hyper(self) -> tuple[dict[str, Any], ...]:
        return tuple(
            {k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups
        )

    def _rng(self) -> tuple[torch.Tensor, ...]:
        states = [torch.get_rng_state()]
        if self.device.type == "cuda":
            states.append(torch.cuda.get_rng_state(self.device))
        return tuple(states)

    def _set_rng(self, rng: tuple[torch.Tensor, ...]) -> None:
        torch.set_rng_state(rng[0])
        if self.device.type == "cuda" and len(rng) > 1:
            torch.cuda.set_rng_state(rng[1], self.device)

    def init(self, seed: int) -> TrainState:
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seed)
            fresh, _ = build_graph(self.graph, Diagnostics(), device=self.device)
            rng_start = torch.Generator().manual_seed(seed).get_state()
            rng = (rng_start,) + (
                (torch.cuda.get_rng_state(self.device),) if self.device.type == "cuda" else ()
            )
        return TrainState(
            params={n: p.detach() for n, p in fresh.named_parameters()},
            buffers={n: b.detach() for n, b in fresh.named_buffers()},
            optimizer={},
            hyper=tuple(dict(h) for h in self.initial_hyper),
            schedule=copy.deepcopy(self.initial_schedule),
            step=0,
            epoch=0,
            rng=rng,
        )

    def _load(self, state: TrainState, clone: bool) -> None:
        take = (lambda t: t.clone()) if clone else (lambda t: t)
        for name, param in self.params.items():
            param.data = take(state.params[name])
        for name, buffer in self.buffers.items():
            buffer.data = take(state.buffers[name])
        self.optimizer.state = defaultdict(dict)
        for name, param_state in state.optimizer.items():
            self.optimizer.state[self.params[name]] = {
                k: take(v) if isinstance(v, torch.Tensor) else v for k, v in param_state.items()
            }
        for group, hyper in zip(self.optimizer.param_groups, state.hyper, strict=True):
            group.update(hyper)

    def _snapshot(self, state: TrainState, **changes: Any) -> TrainState:
        by_param = {id(p): n for n, p in self.params.items()}
        return attrs.evolve(
            state,
            params={n: p.data for n, p in self.params.items()},
            buffers={n: b.data for n, b in self.buffers.items()},
            optimizer={by_param[id(p)]: dict(s) for p, s in self.optimizer.state.items()},
            hyper=self._hyper(),
            lease=type(state.lease)(),
            **changes,
        )

    def _mode(self, training: bool) -> None:
        if self.training is not training:
            self.module.train(training)
            self.training = training

    # --- steps ----------------------------------------------------------------------------

    def _target(self, batch: Batch) -> torch.Tensor:
        target = batch.target
        if self.target_kind == "class":
            return target.reshape(-1).long()
        return target.float()

    def _batch_metrics(
        self,
        output: torch.Tensor,
        target: torch.Tensor,
        loss: torch.Tensor,
        extra: dict[str, torch.Tensor],
    ) -> dict[str, Any]:
        prob = self.to_prob(output.detach().float())
        stats = {m.name: m.update(m.init(), prob, target) for m in self.metrics}
        return {"loss": loss.detach(), **extra, "count": target.shape[0], "stats": stats}

    def train_step(self, state: TrainState, batch: Batch, donate: bool):
        state.check_usable()
        self._load(state, clone=not donate)
        if donate:
            state.lease.spent = True
        self._set_rng(state.rng)
        self._mode(True)
        target = self._target(batch)
        with self.autocast():
            output = self.module(*batch.features)
            data_loss = self.loss_fn(output.float(), target)
        terms = {name: term() for name, term in self.regularizers}
        total = data_loss + sum(terms.values()) if terms else data_loss
        for param in self.params.values():
            param.grad = None
        total.backward()
        self.optimizer.step()
        for param in self.params.values():
            param.grad = None
        schedule = state.schedule
        if self.scheduler is not None and self.spec.optimizer.schedule.interval == "step":
            self.scheduler.load_state_dict(state.schedule)
            self.scheduler.step()
            schedule = self.scheduler.state_dict()
        new_state = self._snapshot(state, schedule=schedule, step=state.step + 1, rng=self._rng())
        extra = {name: value.detach() for name, value in terms.items()}
        return new_state, self._batch_metrics(output, target, data_loss, extra)

    @torch.no_grad()
    def eval_step(self, state: TrainState, batch: Batch) -> dict[str, Any]:
        state.check_usable()
        self._load(state, clone=False)  # evaluation only reads the tensors
        self._mode(False)
        target = self._target(batch)
        with self.autocast():
            output = self.module(*batch.features)
            loss = self.loss_fn(output.float(), target)
        return self._batch_metrics(output, target, loss, {})

    @torch.no_grad()
    def predict_step(self, state: TrainState, features: tuple[torch.Tensor, ...]) -> Any:
        state.check_usable()
        self._load(state, clone=False)
        self._mode(False)
        with self.autocast():
            return self.module(*features)

    def end_epoch(self, state: TrainState, logs: dict[str, float]) -> TrainState:
        state.check_usable()
        schedule = state.schedule
        hyper = state.hyper
        if self.scheduler is not None and self.spec.optimizer.schedule.interval == "epoch":
            self.scheduler.load_state_dict(state.schedule)
            for group, values in zip(self.optimizer.param_groups, state.hyper, strict=True):
                group.update(values)
            with warnings.catch_warnings():
                # The scheduler and optimizer are reloaded from the state each time, so torch's
                # "scheduler stepped before optimizer" heuristic does not apply.
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
                if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    monitor = self.spec.optimizer.schedule.monitor
                    self.scheduler.step(logs.get(monitor, logs["loss"]))
                else:
                    self.scheduler.step()
            schedule, hyper = self.scheduler.state_dict(), self._hyper()
        return attrs.evolve(
            state, schedule=schedule, hyper=hyper, epoch=state.epoch + 1, lease=type(state.lease)()
        )


def compile(spec: S.Spec) -> Program:  # noqa: A001  (the issue names the API `compile`)
    """Check `spec` and build its program; raises `SpecError` listing every problem."""
    report = validate(spec)
    if not report.ok:
        raise SpecError(report.errors)
    from tdsl.graph import resolve

    diags = Diagnostics()
    graph = resolve(spec.model, diags)
    device = resolve_device(spec.device.name)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(spec.seed)
        module, _ = build_graph(graph, diags, device=device)
    engine = _Engine(spec, graph, module, device)
    return Program(spec, module, device, engine.metrics, engine)
