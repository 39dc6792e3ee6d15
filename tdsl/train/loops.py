"""Loops composed from a program's step functions: `fit`, `evaluate`, `predict`.

Everything optional — early stopping, checkpoints, history files, progress output — is a
callback; `fit` itself only runs epochs, accumulates exact epoch metrics (sums weighted
by batch size, not means of batch means) and asks callbacks whether to stop.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO

import attrs
import torch

from tdsl import spec as S
from tdsl.data import FITTED_FILE, Splits, TensorData, stored_spec, with_absolute_paths
from tdsl.errors import TdslError
from tdsl.spec.load_dump import dump
from tdsl.train.atomic_files import atomic_write_text
from tdsl.train.epoch_totals import EpochTotals
from tdsl.train.multi_output import join
from tdsl.train.nonfinite_data import data_note, nonfinite_validation
from tdsl.train.placement import HostRows, place
from tdsl.train.program import Program
from tdsl.train.standard import compose, prepare_directory
from tdsl.train.state import TrainState


class Callback(Protocol):
    """Any of these methods may be left out; a callback with `wants_batches = False` is not
    called after each batch."""

    def on_fit_start(self, run: FitRun, state: TrainState) -> None: ...
    def on_batch_end(self, run: FitRun, metrics: dict[str, Any]) -> None: ...
    def on_epoch_end(self, run: FitRun, state: TrainState, logs: dict[str, float]) -> None: ...
    def on_fit_end(self, run: FitRun, state: TrainState) -> None: ...


@attrs.define
class FitRun:
    """What callbacks see and may change: the history so far, and a stop request."""

    program: Program
    epochs: int
    steps_per_epoch: int
    history: list[dict[str, float]]
    epoch: int = 0
    stop_reason: str | None = None
    # The state a callback holds on to (see `keep`).
    kept: TrainState | None = None

    def keep(self, state: TrainState) -> None:
        """A callback holds on to `state` (the one it was given): the loop will not donate
        it to the next step, whose update then writes new tensors instead of overwriting
        these. Cheaper than copying the state, and never more expensive."""
        self.kept = state


@attrs.frozen
class FitResult:
    """The last state, each epoch's logs, why training stopped early (None: it ran its
    epochs), and the state of the checkpoint monitor's best epoch (None when not kept)."""

    state: TrainState
    history: list[dict[str, float]]
    stop_reason: str | None
    best_state: TrainState | None = None


class NonFiniteLoss(TdslError):
    """Training produced a NaN or infinite loss (with on_nan: stop)."""


# Evaluation batches hold at least this many input values (4 MB of float32): small rows are
# evaluated in few batches, large ones (images) four training batches at a time.
EVAL_VALUES = 1 << 20


def eval_batch_size(spec: S.Spec) -> int:
    """Rows per evaluation batch: `train.eval_batch_size`, by default four training batches
    or `EVAL_VALUES` input values, whichever is more (no activations are kept for a backward
    pass, so larger batches fit)."""
    if spec.train.eval_batch_size:
        return spec.train.eval_batch_size
    values_per_row = sum(math.prod(i.shape) for i in spec.model.inputs) or 1
    return max(4 * spec.train.batch_size, EVAL_VALUES // values_per_row)


def _order_seed(seed: int, epoch: int) -> int:
    # Each epoch's shuffle depends only on (seed, epoch), so a resumed run replays it.
    return seed * 1_000_003 + epoch


def _on_device(
    data: TensorData | None, program: Program, training: bool = False
) -> TensorData | None:
    if data is None or isinstance(data, HostRows):  # None, or placed (and shared) already
        return data
    # Data-parallel: each process takes its share of every batch.
    data = data if program.world is None else program.world.shard(data, training)
    return place(data, program.device)


def _call(callbacks: Sequence[Any], hook: str, *args: Any) -> None:
    for callback in callbacks:
        method = getattr(callback, hook, None)
        if method is not None:
            method(*args)


def fit(
    program: Program,
    state: TrainState,
    data: Splits | TensorData,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    callbacks: Iterable[Any] = (),
    directory: str | os.PathLike | None = None,
    early_stopping: bool = True,
    checkpoint: bool = True,
    tensorboard: bool = True,
    keep_best: bool = True,
    progress: bool | TextIO = False,
) -> FitResult:
    """Train from `state` (not modified) for the spec's epochs, or `epochs` in total, the way
    `tdsl run` does: the spec's early stopping, and the checkpoint monitor's best state kept
    in memory (`result.best_state`). With a `directory`, also checkpoints, history files,
    the spec (spec.yaml) and TensorBoard as the spec asks, so `tdsl resume`, `eval` and
    `predict` work on it. Each of these can be turned off (`early_stopping=False`, ...).
    Prints nothing unless `progress` is True (stderr) or a stream. `callbacks` run after
    the standard ones."""
    lead = program.world is None or program.world.lead
    folder = Path(directory) if directory is not None else None
    spec_text = None
    if folder is not None:
        spec_text = _record_spec(program, data, folder, lead, checkpoint)
    composed = compose(
        program.spec,
        directory=folder,
        spec_text=spec_text,
        extra=list(callbacks),
        lead=lead,
        early_stopping=early_stopping,
        checkpoint=checkpoint,
        tensorboard=tensorboard,
        keep_best=keep_best,
        progress=progress,
    )
    result = train_epochs(
        program, state, data, epochs=epochs, batch_size=batch_size, callbacks=composed.ordered
    )
    best = composed.best.state if composed.best is not None else None
    return attrs.evolve(result, best_state=best)


def _record_spec(
    program: Program, data: Splits | TensorData, folder: Path, lead: bool, checkpoint: bool
) -> str:
    """The spec text checkpoints in `folder` record: as a run directory keeps it (paths
    absolute, every default spelled out, in-memory arrays written to files beside it);
    the lead process also writes it (spec.yaml) and the data's fitted transforms there."""
    if not lead:
        return dump(
            stored_spec(with_absolute_paths(program.spec), folder, write=False), defaults=True
        )
    if checkpoint:
        prepare_directory(folder)
    else:
        folder.mkdir(parents=True, exist_ok=True)
    stored = stored_spec(with_absolute_paths(program.spec), folder)
    text = dump(stored, defaults=True)
    atomic_write_text(folder / "spec.yaml", text)
    fitted = data.fitted if isinstance(data, Splits) else None
    if fitted is not None:  # fitted on the training rows, for resume/eval/predict
        atomic_write_text(folder / FITTED_FILE, fitted.to_json())
    return text


def train_epochs(
    program: Program,
    state: TrainState,
    data: Splits | TensorData,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    callbacks: Iterable[Any] = (),
    history: list[dict[str, float]] | None = None,
) -> FitResult:
    """The bare loop under `fit`: only the given callbacks, nothing from the spec's `train`
    section but epochs and batch size (resuming a run continues its `history`)."""
    spec = program.spec
    epochs = spec.train.epochs if epochs is None else epochs
    batch_size = spec.train.batch_size if batch_size is None else batch_size
    train = _on_device(data.train if isinstance(data, Splits) else data, program, training=True)
    val = _on_device(data.val if isinstance(data, Splits) else None, program)
    callbacks = list(callbacks)
    run = FitRun(program, epochs, train.num_batches(batch_size), list(history or []))
    _call(callbacks, "on_fit_start", run, state)
    # A callback that has nothing to do per batch (a progress printer on a pipe) says so
    # with `wants_batches = False`, and is not called every step.
    batch_hooks = [
        c.on_batch_end
        for c in callbacks
        if hasattr(c, "on_batch_end") and getattr(c, "wants_batches", True)
    ]
    eval_size = eval_batch_size(spec)
    owned = False  # the caller's state is never donated; the ones fit creates are
    compile_seconds = None
    if spec.train.compile and state.epoch < epochs and len(train):
        # Compiled before the timed loop: the first epoch's seconds are training only.
        first = next(iter(train.batches(batch_size)))
        evaluated = next(iter(val.batches(eval_size))) if val is not None and len(val) else None
        compile_seconds = program.warmup(first, state, evaluated)
    while state.epoch < epochs and run.stop_reason is None:
        run.epoch = state.epoch
        if program.world is not None:  # each process's own dropout stream
            state = program.world.rank_rng(state, spec.seed)
        started = time.perf_counter()
        totals = EpochTotals(program)
        for batch in train.batches(batch_size, _order_seed(spec.seed, state.epoch)):
            state, metrics = program.train_step(state, batch, donate=owned)
            owned = True
            totals.add(metrics)
            for hook in batch_hooks:
                hook(run, metrics)
        logs = {"epoch": state.epoch + 1, **totals.result()}
        # A NaN or infinite batch loss makes the epoch's loss one too, so the batches are
        # searched only then: no extra host sync per epoch.
        bad = None if math.isfinite(logs["loss"]) else totals.first_nonfinite()
        if bad is not None:
            raise _nonfinite(run, state, bad, totals, data_note(train, "training"))
        if totals.skipped:
            logs["skipped_batches"] = totals.skipped
        if val is not None and len(val):
            logs.update(_evaluate_placed(program, state, val, eval_size, "val_"))
            message = nonfinite_validation(run.epoch + 1, logs, val)
            if message is not None:
                raise NonFiniteLoss(message)
        logs["lr"] = state.lrs[0]
        logs["seconds"] = time.perf_counter() - started
        if compile_seconds is not None:  # once, in the first epoch this call runs
            logs["compile_seconds"], compile_seconds = compile_seconds, None
        state = program.end_epoch(state, logs)
        run.history.append(logs)
        _call(callbacks, "on_epoch_end", run, state, logs)
        owned = run.kept is not state
    _call(callbacks, "on_fit_end", run, state)
    return FitResult(state, run.history, run.stop_reason)


def _nonfinite(
    run: FitRun, state: TrainState, index: int, totals: EpochTotals, note: str
) -> NonFiniteLoss:
    batches = len(totals.losses) + totals.skipped
    step = state.step - batches + index + 1
    value = float(totals.losses[index])
    last = run.history[-1] if run.history else None
    shown = (
        " ".join(f"{k}={v:.4g}" for k, v in last.items() if k not in ("epoch", "seconds"))
        if last
        else "none (the first epoch)"
    )
    return NonFiniteLoss(
        f"the loss became {value} at step {step} (epoch {run.epoch + 1}, batch {index + 1} of "
        f"{batches}); last finite epoch metrics: {shown}. The checkpoint of the last good "
        "epoch is kept; lower the learning rate, clip gradients (train.clip_norm), or set "
        "train.on_nan: skip_batch" + (f".{note}" if note else "")
    )


def evaluate(
    program: Program,
    state: TrainState,
    data: TensorData,
    *,
    batch_size: int | None = None,
    prefix: str = "",
) -> dict[str, float]:
    """Exact metrics of `state` over all of `data`, with names prefixed by `prefix`."""
    batch_size = batch_size or eval_batch_size(program.spec)
    return _evaluate_placed(program, state, _on_device(data, program), batch_size, prefix)


def _evaluate_placed(
    program: Program, state: TrainState, data: TensorData, batch_size: int, prefix: str
) -> dict[str, float]:
    totals = EpochTotals(program)
    program.eval_batches(state, data.batches(batch_size), totals.add)
    return totals.result(prefix)


def predict(
    program: Program,
    state: TrainState,
    features: Sequence[torch.Tensor],
    *,
    batch_size: int | None = None,
) -> torch.Tensor:
    """The model's outputs for every row of `features`, in order, on the CPU (a tuple of
    them for a model with several outputs)."""
    batch_size = batch_size or eval_batch_size(program.spec)
    features = tuple(f.to(program.device) for f in features)
    outputs = []
    for start in range(0, int(features[0].shape[0]), batch_size):
        chunk = tuple(f[start : start + batch_size] for f in features)
        out = program.predict_step(state, chunk)
        single = isinstance(out, torch.Tensor)
        outputs.append(out.float().cpu() if single else tuple(o.float().cpu() for o in out))
    return torch.cat(outputs) if single else join(outputs)
