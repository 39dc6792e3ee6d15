"""An epoch's exact totals: losses summed weighted by rows, metric states over outputs.

Per step only references are kept: batch losses stay on the device until the epoch ends
(one host sync then, not one per step), and outputs wait until enough rows are pending to
update the metric states in one go (exact either way: states are sums over rows).
"""

from __future__ import annotations

from typing import Any

import torch

from tdsl.train.multi_output import join, numel
from tdsl.train.program import Program

# A step's metrics that are not summed per batch.
_NOT_SUMMED = frozenset(("count", "output", "target"))


class EpochTotals:
    """Exact epoch totals: loss and regularizer sums weighted by rows, metric states.

    Per step it only keeps references: batch losses stay on the device until the epoch ends
    (one host sync then, not one per step), and outputs wait until enough rows are pending
    to update the metric states in one go (exact either way: states are sums over rows)."""

    FLUSH_ELEMENTS = 1 << 18

    def __init__(self, program: Program):
        self.program = program
        self.measured = bool(program.metrics)
        self.values: dict[str, list[torch.Tensor]] = {}  # "loss" and regularizer terms
        self.counts: list[int] = []
        self.skipped = 0
        self.stats: dict[str, Any] = {}
        self.pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.pending_elements = 0
        self.batch_losses: list[torch.Tensor] | None = None  # this process's, kept by result()

    @property
    def losses(self) -> list[torch.Tensor]:
        return self.values.get("loss", [])

    def first_nonfinite(self) -> int | None:
        """Index of the first batch whose loss was NaN or infinite, if any."""
        losses = self.batch_losses if self.batch_losses is not None else self.losses
        if not losses:
            return None
        finite = torch.isfinite(torch.stack(losses))
        return None if bool(finite.all()) else int((~finite).nonzero()[0, 0])

    def add(self, metrics: dict[str, Any]) -> None:
        if metrics.get("skipped"):
            self.skipped += 1
            return
        self.counts.append(metrics["count"])
        values = self.values
        for key, value in metrics.items():
            if key not in _NOT_SUMMED:
                if key in values:
                    values[key].append(value)
                else:
                    values[key] = [value]
        if self.measured:
            output = metrics["output"]
            self.pending.append((output, metrics["target"]))
            self.pending_elements += (
                output.numel() if isinstance(output, torch.Tensor) else numel(output)
            )
            if self.pending_elements >= self.FLUSH_ELEMENTS:
                self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        outputs, targets = zip(*self.pending, strict=True)
        self.pending, self.pending_elements = [], 0
        states = self.program.measure(join(outputs), join(targets))
        for metric in self.program.metrics:
            previous = self.stats.get(metric.name)
            state = states[metric.name]
            self.stats[metric.name] = state if previous is None else metric.merge(previous, state)

    def result(self, prefix: str = "") -> dict[str, float]:
        self.batch_losses = list(self.losses)
        if self.program.world is not None:  # data-parallel: add up every process's rows
            self.program.world.merge_accumulated(self)
        if not self.counts:  # every batch was skipped: nothing to average
            names = ["loss", *(m.name for m in self.program.metrics)]
            return {f"{prefix}{name}": float("nan") for name in names}
        self._flush()
        device = self.losses[0].device
        counts = torch.tensor(self.counts, dtype=torch.float64, device=device)
        stacked = [torch.stack(v) for v in self.values.values()]
        # One row per summed value (usually the loss alone), weighted by rows: one host sync.
        columns = stacked[0] if len(stacked) == 1 else torch.stack(stacked)
        rows = sum(self.counts)
        sums = torch.mv(columns.reshape(len(stacked), -1).double(), counts).tolist()
        named = zip(self.values, sums, strict=True)
        logs = {f"{prefix}{key}": total / rows for key, total in named}
        for metric in self.program.metrics:
            logs[f"{prefix}{metric.name}"] = metric.compute(self.stats[metric.name])
        return logs
