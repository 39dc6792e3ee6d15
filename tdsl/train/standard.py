"""The callbacks a spec asks for, composed once for `fit` and for run directories.

Early stopping, the checkpoint monitor's best state (kept in memory), checkpoints and history
files in a directory, progress output and TensorBoard: `fit` and `tdsl run` build them here,
so an embedded `fit` and the command line train the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import attrs
import torch

from tdsl import spec as S
from tdsl.check.training_setup import default_monitor
from tdsl.errors import TdslError
from tdsl.train.callbacks import Checkpointer, EarlyStopping, HistoryWriter, _Best
from tdsl.train.compile_cache import CompileCacheKeeper
from tdsl.train.progress import ProgressPrinter
from tdsl.train.state import TrainState


class DirectoryError(TdslError):
    """A directory cannot hold a run's checkpoints as asked."""


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {key: _clone(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_clone(item) for item in value)
    return value


def copy_state(state: TrainState) -> TrainState:
    """An independent copy: later (donating) steps update the original's tensors in place."""
    return attrs.evolve(
        state,
        params=_clone(state.params),
        buffers=_clone(state.buffers),
        optimizer=_clone(state.optimizer),
        hyper=_clone(state.hyper),
        schedule=_clone(state.schedule),
        rng=_clone(state.rng),
        scaler=_clone(state.scaler),
        lease=type(state.lease)(),  # its own: donating the original must not spend the copy
    )


class BestState:
    """Keeps a copy of the state after the epoch the checkpoint monitor likes best (the
    first epoch's when the monitor is never finite), as `best.pt` holds on disk."""

    def __init__(self, monitor: str, mode: str = "auto"):
        self.tracker = _Best(monitor, mode)
        self.state: TrainState | None = None

    def on_epoch_end(self, run, state: TrainState, logs: dict[str, float]) -> None:
        if self.tracker.improved(logs):
            self.tracker.best = logs[self.tracker.monitor]
            self.state = self._hold(run, state)
        elif self.state is None:
            self.state = self._hold(run, state)

    @staticmethod
    def _hold(run, state: TrainState) -> TrainState:
        # In a loop, the loop leaves the state alone (`FitRun.keep`); otherwise a copy.
        keep = getattr(run, "keep", None)
        if keep is None:
            return copy_state(state)
        keep(state)
        return state


@attrs.frozen
class Composed:
    """All callbacks in call order; those whose state a checkpoint keeps (the checkpointer
    last, when there is one); the in-memory best state's keeper."""

    ordered: list[Any]
    stateful: list[Any]
    best: BestState | None


def checkpoint_monitor(spec: S.Spec) -> str:
    return spec.train.checkpoint.monitor or default_monitor(spec)


def prepare_directory(directory: Path) -> None:
    """Create `directory/checkpoints`; refuse a directory that already holds a run."""
    if (directory / "checkpoints" / "last.pt").exists():
        raise DirectoryError(
            f"{directory} already holds a run; continue it with `tdsl resume "
            f"{directory}` or choose another directory"
        )
    for folder in ("checkpoints", "tensorboard"):  # writes through a link leave the directory
        if (directory / folder).is_symlink():
            raise DirectoryError(
                f"{directory / folder} is a symbolic link; a run writes only inside its own "
                "directory: replace the link with the folder it points to"
            )
    try:
        (directory / "checkpoints").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DirectoryError(f"cannot write the directory {directory}: {exc.strerror}") from None


def compose(
    spec: S.Spec,
    *,
    directory: Path | None = None,
    spec_text: str | None = None,
    extra: Sequence[Any] = (),
    lead: bool = True,
    early_stopping: bool = True,
    checkpoint: bool = True,
    tensorboard: bool = True,
    keep_best: bool = True,
    progress: bool | TextIO = False,
) -> Composed:
    """The callbacks `spec` asks for. Checkpoints, history files and TensorBoard need a
    `directory` (with `spec_text`, the spec a checkpoint records); `progress` is True (to
    stderr), a stream, or False. Only the `lead` process of a data-parallel run writes and
    prints; the others only decide (the same reduced logs give the same decisions)."""
    stateful: list[Any] = []
    es = spec.train.early_stopping
    if early_stopping and es is not None:
        stateful.append(EarlyStopping(es.monitor, es.mode, es.patience, es.min_delta))
    cp = spec.train.checkpoint
    best = BestState(checkpoint_monitor(spec), cp.mode) if keep_best else None
    # Early stopping decides first so the checkpoint records the stop reason.
    ordered: list[Any] = [*stateful, *([best] if best else [])]
    checkpointer = None
    if directory is not None and checkpoint:
        if spec_text is None:
            raise ValueError("checkpoints need the spec text they record")
        checkpointer = Checkpointer(
            directory / "checkpoints",
            spec_text,
            checkpoint_monitor(spec),
            cp.mode,
            cp.save_best,
            cp.save_last,
            others=list(stateful),
        )
    kept = [*stateful, *([checkpointer] if checkpointer else [])]
    if not lead:
        return Composed([*ordered, *extra], kept, best)
    if directory is not None:
        if spec.train.compile:  # loads before the step compiles; logs before the writer
            ordered.append(CompileCacheKeeper(directory, spec))
        ordered.append(HistoryWriter(directory))
    if checkpointer is not None:
        ordered.append(checkpointer)
    if progress:
        ordered.append(ProgressPrinter(None if progress is True else progress))
    ordered += list(extra)
    if tensorboard and spec.train.tensorboard:
        if directory is None:
            raise DirectoryError(
                "train.tensorboard writes into a directory: pass fit(..., directory=...), "
                "or tensorboard=False"
            )
        from tdsl.train.tensorboard import FOLDER, TensorBoardLogger

        ordered.append(TensorBoardLogger(directory / FOLDER))
    track = spec.train.track.mlflow if spec.train.track is not None else None
    if track is not None and directory is not None:  # off by default; never stops training
        from tdsl.train.tracking import MlflowLogger

        text = spec_text if spec_text is not None else ""
        ordered.append(MlflowLogger(directory, text, track.uri, track.experiment))
    return Composed(ordered, kept, best)
