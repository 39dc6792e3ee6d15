"""Composable pieces of a training run, each a `fit` callback with one job.

Callbacks that must survive a resume expose `state_dict()` / `load_state_dict()`; the
checkpointer stores those alongside the train state.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tdsl.registry.metrics import lookup_metric
from tdsl.train.atomic_files import atomic_write_text
from tdsl.train.checkpoint_files import CHECKSUM_SUFFIX, remove_orphans, write_checkpoint
from tdsl.train.progress import ProgressPrinter as ProgressPrinter  # its home before progress.py
from tdsl.train.state import TrainState


def finite(value: Any) -> Any:
    """`value` with every NaN and infinity in it as None: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def strict_json(value: Any, **kwargs: Any) -> str:
    """`json.dumps` of `value` with non-finite numbers as null; anything else that is not
    JSON raises instead of writing `NaN` (which JSON readers refuse)."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)


def resolve_mode(monitor: str, mode: str) -> str:
    """auto: maximize metrics where higher is better (accuracy, auroc, ...), else minimize."""
    if mode != "auto":
        return mode
    name = monitor.removeprefix("val_")
    # A metric of one of several outputs is `<output>_<kind>`: the longest known kind.
    suffixes = [name] + [name[i + 1 :] for i, c in enumerate(name) if c == "_"]
    found = next((m for m in map(lookup_metric, suffixes) if m is not None), None)
    return "max" if found is not None and found.higher_is_better else "min"


class _Best:
    def __init__(self, monitor: str, mode: str, min_delta: float = 0.0):
        self.monitor, self.mode, self.min_delta = monitor, resolve_mode(monitor, mode), min_delta
        self.best: float | None = None

    def improved(self, logs: dict[str, float]) -> bool:
        value = logs.get(self.monitor)
        if value is None or math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


class EarlyStopping:
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs."""

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "auto",
        patience: int = 5,
        min_delta: float = 0.0,
    ):
        self.tracker = _Best(monitor, mode, min_delta)
        self.patience = patience
        self.waited = 0

    def on_epoch_end(self, run, state: TrainState, logs: dict[str, float]) -> None:
        if self.tracker.improved(logs):
            self.tracker.best = logs[self.tracker.monitor]
            self.waited = 0
            return
        self.waited += 1
        if self.waited >= self.patience:  # as in Keras: patience epochs without improvement
            best = self.tracker.best  # None: missing or NaN in every epoch so far
            since = f"best {best:.6g}" if best is not None else "it was missing or NaN every epoch"
            run.stop_reason = (
                f"early stopping: {self.tracker.monitor} has not improved for "
                f"{self.waited} epochs ({since})"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.tracker.best, "waited": self.waited}

    def load_state_dict(self, data: dict[str, Any]) -> None:
        self.tracker.best, self.waited = data["best"], data["waited"]


class Checkpointer:
    """Writes `last.pt` every epoch and `best.pt` when `monitor` improves, atomically."""

    def __init__(
        self,
        directory: Path,
        spec_text: str,
        monitor: str = "val_loss",
        mode: str = "auto",
        save_best: bool = True,
        save_last: bool = True,
        others: Sequence[Any] = (),
    ):
        self.directory, self.spec_text = directory, spec_text
        self.tracker = _Best(monitor, mode)
        self.save_best, self.save_last = save_best, save_last
        self.others = others  # callbacks whose state is saved with the checkpoint

    def payload(self, run, state: TrainState) -> dict[str, Any]:
        return {
            "format": "tdsl-checkpoint-1",
            "spec": self.spec_text,
            "state": state.to_dict(),
            "model": state.model_state_dict(),
            "history": run.history,
            "callbacks": [c.state_dict() for c in self.others if hasattr(c, "state_dict")],
            "checkpointer": {"best": self.tracker.best},
            "stop_reason": run.stop_reason,
        }

    def _write(self, name: str, payload: dict[str, Any]) -> None:
        write_checkpoint(self.directory / name, payload)

    def on_fit_start(self, run, state: TrainState) -> None:
        # A run killed while writing a checkpoint left its temporary file: 2-20 MB each.
        names = ("last.pt", "best.pt")
        remove_orphans(self.directory, names + tuple(n + CHECKSUM_SUFFIX for n in names))
        # A run interrupted during its first epoch can then be resumed from the start.
        if self.save_last and not (self.directory / "last.pt").exists():
            self._write("last.pt", self.payload(run, state))

    def on_epoch_end(self, run, state: TrainState, logs: dict[str, float]) -> None:
        improved = self.tracker.improved(logs)
        if improved:
            self.tracker.best = logs[self.tracker.monitor]
        payload = self.payload(run, state)
        if self.save_best and (improved or not (self.directory / "best.pt").exists()):
            self._write("best.pt", payload)
        if self.save_last:
            self._write("last.pt", payload)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.tracker.best}

    def load_state_dict(self, data: dict[str, Any]) -> None:
        self.tracker.best = data["best"]


class HistoryWriter:
    """history.csv and history.jsonl in the run directory, rewritten whole each epoch."""

    def __init__(self, directory: Path):
        self.directory = directory

    def on_epoch_end(self, run, state: TrainState, logs: dict[str, float]) -> None:
        columns: list[str] = []
        for row in run.history:
            columns += [key for key in row if key not in columns]
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(run.history)
        atomic_write_text(self.directory / "history.csv", table.getvalue())
        lines = "".join(strict_json(row) + "\n" for row in run.history)
        atomic_write_text(self.directory / "history.jsonl", lines)
