"""Optional TensorBoard logging (`train.tensorboard: true`), as the seeds' TensorBoard chapter
does with `SummaryWriter`: each epoch's metrics as scalars and the parameters as histograms.

Training values go to RUN_DIR/tensorboard/train and validation values to .../val under the
same tag (`loss`, `accuracy`), so TensorBoard draws the two curves in one chart:

    tensorboard --logdir RUN_DIR/tensorboard

It needs the `tensorboard` package, an optional extra (`pip install tensorboard`);
validation reports a spec that asks for it without the package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tdsl.check.training_setup import INSTALL_TENSORBOARD
from tdsl.errors import TdslError

FOLDER = "tensorboard"
_NOT_SCALARS = ("epoch", "seconds", "compile_seconds", "compile_cached")


class TensorBoardError(TdslError):
    """TensorBoard logging was asked for but cannot run."""


class TensorBoardLogger:
    """A `fit` callback writing event files under `directory`: per epoch, the scalars of the
    epoch's logs (train under train/, `val_*` under val/ without the prefix) and, with
    `histograms`, each parameter's distribution. Epochs are the global step, so a resumed
    run continues the same curves."""

    def __init__(self, directory: str | Path, histograms: bool = True):
        self.directory = Path(directory)
        self.histograms = histograms
        self.writers: dict[str, Any] = {}

    def _writer(self, split: str) -> Any:
        if split not in self.writers:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise TensorBoardError(
                    "TensorBoard logging needs the tensorboard package "
                    f"({INSTALL_TENSORBOARD}): {exc}"
                ) from None
            self.writers[split] = SummaryWriter(str(self.directory / split))
        return self.writers[split]

    def on_fit_start(self, run: Any, state: Any) -> None:
        self._writer("train")  # fails here, before any epoch, if the package is missing

    def on_epoch_end(self, run: Any, state: Any, logs: dict[str, float]) -> None:
        step = int(logs["epoch"])
        for key, value in logs.items():
            if key in _NOT_SCALARS:
                continue
            split, tag = ("val", key[4:]) if key.startswith("val_") else ("train", key)
            self._writer(split).add_scalar(tag, value, step)
        if self.histograms:
            train = self._writer("train")
            for name, tensor in state.params.items():
                train.add_histogram(f"parameters/{name}", tensor.detach().float().cpu(), step)
        for writer in self.writers.values():
            writer.flush()  # an interrupted run keeps every finished epoch

    def on_fit_end(self, run: Any, state: Any) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()
