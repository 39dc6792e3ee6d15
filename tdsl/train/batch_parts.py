"""The parts of a step that concern one batch, mixed into `Steps`: its target as the loss
takes it, the data loss and regularizer terms, the backward pass (scaled for fp16),
gradient accumulation over micro-batches, gradient clipping, and what a step reports about
the batch (its loss, row count, outputs and targets) or measures (each metric's state)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from tdsl.data import Batch
from tdsl.train.eval_steps import NONE
from tdsl.train.multi_output import detached, rows


class BatchParts:
    """Mixed into `Steps`, whose attributes (module, loss, objective, scaler, spec, slots)
    these methods use."""

    def _target(self, batch: Batch) -> torch.Tensor:
        target = batch.target
        if self.multi is not None:
            return self.multi.split_targets(target)
        if self.target_kind == "class":  # a class per row, or per position ([B, T])
            return target.reshape(-1).long() if self.class_dim is None else target.long()
        return target.float()

    def measure(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
        """Each metric's state over these rows (`output` as the model gives it; the metrics
        see classes on the last axis)."""
        if self.multi is not None:
            return self.multi.measure(self.metrics, output, target)
        output = output.detach().float()
        if self.class_dim == 1:
            output = output.movedim(1, -1)
        prob = self.to_prob(output)
        return {m.name: m.first(prob, target) for m in self.metrics}

    def _batch_metrics(
        self,
        output: torch.Tensor,
        target: torch.Tensor,
        loss: torch.Tensor,
        extra: Mapping[str, torch.Tensor],
    ) -> dict[str, Any]:
        # Outputs, not metric states: loops update metrics over many batches at once.
        if self.multi is None:  # one output tensor and one target tensor
            count, output = target.shape[0], output.detach()
        else:
            count, output = rows(target), detached(output)
        return {"loss": loss.detach(), **extra, "count": count, "output": output, "target": target}

    def _terms(self) -> Mapping[str, torch.Tensor]:
        """Each regularizer's penalty on the parameters now in the slots."""
        if not self.regularizers:
            return NONE
        return {name: term(self.params) for name, term in self.regularizers}

    def _loss(self, output: Any, target: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The data loss, and with several outputs each term's (`loss_<output>`)."""
        if self.multi is None:
            return self.loss_fn(output.float(), target), {}
        return self.multi.losses(output, target)

    def _backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def _accumulate(self, batch: Batch, target: torch.Tensor):
        """Forward and backward over `accumulate` micro-batches; the gradients add up to the
        full batch's because each mean-reduced loss is weighted by its share of the rows."""
        pieces = min(self.spec.train.accumulate, batch.size)
        features = [torch.tensor_split(f, pieces) for f in batch.features]
        outputs, data_loss = [], None
        for index, part in enumerate(torch.tensor_split(target, pieces)):
            with self.autocast():
                output = self.module(*(f[index] for f in features))
                loss = self.loss_fn(output.float(), part) * (part.shape[0] / batch.size)
            self._backward(loss)
            outputs.append(output.detach())
            data_loss = loss.detach() if data_loss is None else data_loss + loss.detach()
        return (outputs[0] if pieces == 1 else torch.cat(outputs)), data_loss

    def _clip(self) -> None:
        train = self.spec.train
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not scaled ones
        params = list(self.params.values())
        if train.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, train.clip_norm)
        if train.clip_value is not None:
            torch.nn.utils.clip_grad_value_(params, train.clip_value)
