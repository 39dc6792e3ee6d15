"""The evaluation and prediction steps of `Steps`: no-grad passes over batches with the
state's tensors loaded uncopied (evaluation only reads them), eval mode, and the compiled
forward pass when the spec compiles its step."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

import torch

from tdsl.data import Batch
from tdsl.train.state import TrainState

NONE: Mapping[str, torch.Tensor] = MappingProxyType({})  # no loss parts or penalties


class EvalSteps:
    """Mixed into `Steps`, whose attributes (module, slots, loss, metrics, autocast, the
    compiled step) these methods use."""

    @torch.no_grad()
    def eval_step(self, state: TrainState, batch: Batch) -> dict[str, Any]:
        self._eval_mode(state)
        return self._eval(batch)

    @torch.no_grad()
    def eval_batches(
        self, state: TrainState, batches: Iterable[Batch], add: Callable[[dict[str, Any]], None]
    ) -> None:
        """`eval_step` on each of `batches`, each one's metrics handed to `add`: one no-grad
        region and one load of `state` for the whole pass, as a hand-written loop has."""
        self._eval_mode(state)
        if self.mixed or self.compiled is not None or self.multi is not None:
            for batch in batches:
                add(self._eval(batch))
            return
        # One fp32 output, eager: `_eval` inlined (no-grad outputs need no detaching).
        module, loss_fn = self.module, self.loss_fn
        target_of, features_of = self._target, self._features
        for batch in batches:
            target = target_of(batch)
            output = module(*features_of(batch.features))
            loss = loss_fn(output.float(), target)
            add({"loss": loss, "count": target.shape[0], "output": output, "target": target})

    def _eval_mode(self, state: TrainState) -> None:
        state.check_usable()
        self.slots.load(state, clone=False)  # evaluation only reads the tensors
        self._mode(False)

    def _eval(self, batch: Batch) -> dict[str, Any]:
        target = self._target(batch)
        if not self.mixed and self.compiled is None and self.multi is None:
            output = self.module(*self._features(batch.features))
            loss = self.loss_fn(output.float(), target)
            return self._batch_metrics(output, target, loss, NONE)
        if self.compiled is not None:  # one output (validation refuses compiling several)
            output, loss = self.compiled.evaluate(self._features(batch.features), target)
            return self._batch_metrics(output, target, loss, NONE)
        with self.autocast():
            output = self.module(*self._features(batch.features))
            loss, parts = self._loss(output, target)
        return self._batch_metrics(output, target, loss, {k: v.detach() for k, v in parts.items()})

    @torch.no_grad()
    def predict_step(self, state: TrainState, features: tuple[torch.Tensor, ...]) -> Any:
        state.check_usable()
        self.slots.load(state, clone=False)
        self._mode(False)
        with self.autocast():
            return self.module(*self._features(features))
