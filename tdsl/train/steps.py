"""Pure step functions over `TrainState`.

A step loads the state's tensors into the module's parameter slots (cloned, unless the
caller donates the state), runs torch's own optimizer and scheduler on them, and returns a
new state holding the results. So any torch.optim optimizer works unchanged, and the input
state is never modified. For SGD, Adam and AdamW on the CPU a pure step instead only reads
the state's parameters and updates them out of place (`tdsl.pure_updates`), which saves
the copy.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import torch

from tdsl import spec as S
from tdsl.data import Batch
from tdsl.model.build import GraphModule
from tdsl.model.graph import Graph
from tdsl.train.batch_parts import BatchParts
from tdsl.train.compiled_step import CompiledStep
from tdsl.train.direct_updates import DirectUpdate
from tdsl.train.eval_steps import NONE, EvalSteps
from tdsl.train.fresh_states import FreshStates
from tdsl.train.layout import nhwc, nhwc_all
from tdsl.train.objective import Objective
from tdsl.train.pure_updates import PureUpdate, pure_update_for
from tdsl.train.randomness import uses_randomness
from tdsl.train.state import TrainState
from tdsl.train.state_slots import Slots


@contextlib.contextmanager
def _scheduler_order_unchecked():
    """The scheduler and optimizer are reloaded from the state each time, and an out-of-place
    update never calls optimizer.step(), so torch's "scheduler stepped before optimizer"
    heuristic does not apply."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
        yield


def _unchanged(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


class Steps(EvalSteps, BatchParts):
    def __init__(
        self,
        spec: S.Spec,
        graph: Graph,
        module: GraphModule,
        device: torch.device,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        objective: Objective,
        autocast: Callable[[], Any],
        allow_imports: Sequence[str] = (),
        world: Any = None,
        values: dict[str, Any] | None = None,
        prepare: Callable[[torch.nn.Module], None] | None = None,
        fixed_norms: Sequence[torch.nn.Module] = (),
    ):
        self.spec, self.graph, self.module, self.device = spec, graph, module, device
        self.world = world  # tdsl.distributed.World: processes that share each batch
        # The frozen norm layers that keep their statistics (eval mode).
        self.fixed_norms = tuple(fixed_norms)
        self.optimizer, self.scheduler, self.autocast = optimizer, scheduler, autocast
        # fp32 steps enter no autocast context at all (a nullcontext costs three calls).
        self.mixed = autocast is not contextlib.nullcontext
        self.slots = Slots(module, optimizer)
        self.direct_update = DirectUpdate(optimizer)  # optimizer.step(), minus its wrapper
        self.params, self.buffers = self.slots.params, self.slots.buffers
        self.param_list = tuple(self.params.values())
        # Without random layers a step draws no random numbers, so the RNG state passes
        # through unchanged and need not be set and read back each step.
        self.stochastic = uses_randomness(module)
        self.loss_fn, self.to_prob = objective.loss_fn, objective.to_prob
        self.regularizers, self.metrics = objective.regularizers, objective.metrics
        self.target_kind, self.class_dim = objective.target_kind, objective.class_dim
        self.multi = objective.multi
        # fp16 needs loss scaling so small gradients do not underflow; bf16 does not.
        fp16 = spec.device.precision == "fp16"
        self.scaler = torch.amp.GradScaler(device.type) if fp16 else None
        self.training: bool | None = None
        # Decided once here rather than looked up in the spec on every step.
        train = spec.train
        self.skip_nonfinite = train.on_nan == "skip_batch"
        self.clipping = train.clip_norm is not None or train.clip_value is not None
        schedule = spec.optimizer.schedule
        self.step_schedule = scheduler is not None and schedule.interval == "step"
        self.compiled = (
            CompiledStep(
                module,
                self.loss_fn,
                self.regularizers,
                optimizer,
                autocast,
                train,
                generation=lambda: self.slots.generation,
            )
            if train.compile
            else None
        )
        # The out-of-place update a pure step may use instead of cloning; only where nothing
        # else touches the optimizer: no loss scaler, gradient sync, compiled update,
        # accumulation, or skipped batch (which needs the untouched input).
        plain = not (fp16 or world is not None or train.compile or self.skip_nonfinite)
        plain = plain and train.accumulate == 1
        self.pure_update = pure_update_for(optimizer, module, device) if plain else None
        # With train.channels_last: image batches and conv weights in NHWC order.
        self.channels_last = train.channels_last
        self._layout = nhwc if train.channels_last else _unchanged
        self._features = nhwc_all if train.channels_last else tuple
        self.fresh = FreshStates(
            spec,
            graph,
            module,
            device,
            allow_imports,
            values,
            prepare,
            self.slots.hyper(),
            scheduler.state_dict() if scheduler else None,
            self.scaler,
            self._layout,
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
        return self.fresh(seed)

    def _mode(self, training: bool) -> None:
        if self.training is not training:
            self.module.train(training)
            for norm in self.fixed_norms:
                norm.eval()
            self.training = training

    # --- steps ----------------------------------------------------------------------------

    def _skipped(self, state: TrainState) -> tuple[TrainState, dict[str, Any]]:
        """The batch's loss was not finite and on_nan is skip_batch: no update happens. The
        tensors were cloned on load, so the new state may share the input state's."""
        for param in self.params.values():
            param.grad = None
        new_state = attrs.evolve(
            state,
            step=state.step + 1,
            rng=self._rng() if self.stochastic else state.rng,
            lease=type(state.lease)(),
        )
        return new_state, {"skipped": 1, "count": 0}

    def train_step(self, state: TrainState, batch: Batch, donate: bool):
        state.check_usable()
        skip_nonfinite = self.skip_nonfinite
        update = None if donate else self.pure_update
        out_of_place = update is not None and update.covers(state.hyper)
        if out_of_place:
            self.slots.borrow(state)
            reloaded = True
        else:
            # Skipping needs the untouched input tensors, so it never updates in place.
            reloaded = self.slots.load(state, clone=not donate or skip_nonfinite)
        if donate:
            state.lease.spent = True
        if self.stochastic:
            self._set_rng(state.rng)
        if self.training is not True:
            self._mode(True)
        target = self._target(batch)
        if self.channels_last:
            batch = Batch(self._features(batch.features), batch.target)
        for param in self.param_list:  # whatever ran backward since (the caller's code)
            param.grad = None
        compiled = self.compiled is not None and self.compiled.ready()
        if compiled:  # forward, backward, clipping and the update in one graph
            output, data_loss, term_values = self.compiled(batch.features, target)
            terms = dict(zip((name for name, _ in self.regularizers), term_values, strict=True))
            parts = {}
        elif self.spec.train.accumulate == 1:
            if self.mixed:
                with self.autocast():
                    output = self.module(*batch.features)
                    data_loss, parts = self._loss(output, target)
            elif self.multi is None:
                output = self.module(*batch.features)
                data_loss, parts = self.loss_fn(output.float(), target), NONE
            else:
                output = self.module(*batch.features)
                data_loss, parts = self._loss(output, target)
            terms = self._terms() if self.regularizers else NONE
            loss = data_loss + sum(terms.values()) if terms else data_loss
            if self.scaler is None:
                loss.backward()
            else:
                self._backward(loss)
        else:
            (output, data_loss), parts = self._accumulate(batch, target), {}
            terms = self._terms()
            if terms:
                self._backward(sum(terms.values()))
        if self.world is not None:  # the whole global batch's gradient and loss, everywhere
            params, buffers = self.params.values(), self.buffers.values()
            data_loss = self.world.sync_gradients(params, buffers, data_loss, batch.size)
        if skip_nonfinite and not bool(torch.isfinite(data_loss + sum(terms.values()))):
            return self._skipped(state)
        if self.clipping and not compiled:
            self._clip()
        if self.scaler is not None:
            self.scaler.load_state_dict(state.scaler)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        elif out_of_place:
            self._update_out_of_place(update, state)
        elif not compiled:
            self.direct_update()
        for param in self.param_list:  # no gradients held between steps
            param.grad = None
        schedule = state.schedule
        if self.step_schedule:
            self.scheduler.load_state_dict(state.schedule)
            with _scheduler_order_unchecked():
                self.scheduler.step()
            schedule = self.scheduler.state_dict()
        new_state = self.slots.snapshot(
            state,
            reloaded,
            # Optimizers leave their hyperparameters alone; only a schedule changes them.
            hyper=None if self.step_schedule else state.hyper,
            schedule=schedule,
            step=state.step + 1,
            rng=self._rng() if self.stochastic else state.rng,
            scaler=self.scaler.state_dict() if self.scaler is not None else None,
        )
        if parts or terms:
            extra = {name: value.detach() for name, value in {**parts, **terms}.items()}
            return new_state, self._batch_metrics(output, target, data_loss, extra)
        return new_state, self._batch_metrics(output, target, data_loss, NONE)

    def _update_out_of_place(self, update: PureUpdate, state: TrainState) -> None:
        """The optimizer's step on the borrowed `state`, leaving its tensors alone."""
        made = update(state.params, state.optimizer)
        if made is None:  # a step it does not cover (sparse gradients): clone after all
            self.slots.unborrow(state)
            self.optimizer.step()
        else:
            self.slots.adopt(*made)

    def end_epoch(self, state: TrainState, logs: dict[str, float]) -> TrainState:
        state.check_usable()
        schedule = state.schedule
        hyper = state.hyper
        if self.scheduler is not None and self.spec.optimizer.schedule.interval == "epoch":
            self.scheduler.load_state_dict(state.schedule)
            for group, values in zip(self.optimizer.param_groups, state.hyper, strict=True):
                group.update(values)
            with _scheduler_order_unchecked():
                if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    monitor = self.spec.optimizer.schedule.monitor
                    self.scheduler.step(logs.get(monitor, logs["loss"]))
                else:
                    self.scheduler.step()
            schedule, hyper = self.scheduler.state_dict(), self.slots.hyper()
        return attrs.evolve(
            state, schedule=schedule, hyper=hyper, epoch=state.epoch + 1, lease=type(state.lease)()
        )
