"""Training progress for people: a live tqdm bar per epoch on a terminal, one plain line per
epoch otherwise (logs, CI, a pipe)."""

from __future__ import annotations

import os
import sys
import time
import weakref
from typing import Any, TextIO

from tqdm import tqdm

from tdsl.train.state import TrainState

# `eta` is the whole run's time left (the bar shows the epoch's part). Ordered by importance:
# a terminal narrower than the line cuts its end (the width is read before every redraw)
# instead of wrapping it.
BAR_FORMAT = "{desc} [{bar}] {n_fmt}/{total_fmt} loss {loss} {speed} eta {run_left}"

_drawn: weakref.WeakSet[ProgressPrinter] = weakref.WeakSet()  # printers with a bar on screen


def end_live_bars() -> None:
    """End every bar still on screen with a newline, so that what is printed next (an
    interrupt, an error) starts on a line of its own; the bar stays as the run's last state."""
    for printer in list(_drawn):
        printer.close_bar(keep=True)


def format_logs(logs: dict[str, float]) -> str:
    return " ".join(
        f"{k}={v:.4g}"
        for k, v in logs.items()
        if k not in ("epoch", "seconds", "compile_seconds", "compile_cached")
    )


class _EpochBar(tqdm):
    """A tqdm bar with the printer's fields: the running loss and the whole run's remaining
    time, computed only when tqdm redraws (the loss read costs a host sync)."""

    monitor_interval = 0  # no tqdm monitor thread: every step updates the bar itself

    def __init__(self, printer: ProgressPrinter, **kwargs: Any):
        self.printer = printer
        super().__init__(**kwargs)

    @property
    def format_dict(self) -> dict[str, Any]:
        fields = super().format_dict
        if "bar_format" in fields:  # not a closed bar's placeholder
            fields.update(self.printer.fields(fields["n"], fields["rate"], fields["elapsed"]))
            fields["ncols"] = _width(self.printer.stream)
        return fields


def _width(stream: TextIO) -> int | None:
    """Columns a bar may fill on `stream`'s terminal, read again at each redraw so that a
    resize applies; $COLUMNS where the terminal reports none; None: no limit."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        columns = 0
    if columns <= 0:
        text = os.environ.get("COLUMNS", "")
        columns = int(text) if text.isdigit() else 0
    # One column short of the edge: some terminals wrap a line that fills the last column.
    return columns - 1 if columns > 1 else None


def _speed(rate: float | None) -> str:
    if not rate:
        return "?it/s"
    if rate < 1:
        return f"{tqdm.format_sizeof(1 / rate)}s/it"
    return f"{tqdm.format_sizeof(rate)}it/s"


class ProgressPrinter:
    """A live bar per epoch on a terminal; one line per epoch otherwise (logs, CI)."""

    def __init__(self, stream: TextIO | None = None, refresh_seconds: float = 0.1):
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.wants_batches = self.live  # only a live bar moves with every step
        self.refresh = refresh_seconds
        self.bar: _EpochBar | None = None

    def on_fit_start(self, run, state: TrainState) -> None:
        self.started, self.first_epoch, self.finished = time.perf_counter(), state.epoch, 0
        self.loss_sum, self.rows = None, 0
        if self.live and state.epoch < run.epochs:
            self._open_bar(run, state.epoch)

    def _open_bar(self, run, epoch: int) -> None:
        # Opened when the epoch starts, not at its first step, so that the first rate shown
        # counts that step's whole time.
        self.run = run
        self.bar = _EpochBar(
            self,
            total=run.steps_per_epoch,
            desc=f"epoch {epoch + 1}/{run.epochs}",
            bar_format=BAR_FORMAT,
            file=self.stream,
            leave=False,
            mininterval=self.refresh,
            miniters=1,
        )
        _drawn.add(self)

    def fields(self, n: int, rate: float | None, elapsed: float) -> dict[str, str]:
        """The bar's own fields, for `n` steps of the current epoch done."""
        if rate is None and elapsed:
            rate = n / elapsed  # as tqdm does before its smoothed rate exists
        loss = "?" if not self.rows else f"{float(self.loss_sum) / self.rows:.4g}"
        done = self.finished + n / max(self.run.steps_per_epoch, 1)
        todo = self.run.epochs - self.first_epoch - done
        spent = time.perf_counter() - self.started
        left = tqdm.format_interval(spent / done * todo) if done > 0 else "?"
        return {"loss": loss, "speed": _speed(rate), "run_left": left}

    def on_batch_end(self, run, metrics: dict[str, Any]) -> None:
        if self.bar is None:
            return
        count = metrics["count"]
        loss = metrics["loss"].detach() * count  # stays on the device until a redraw
        self.loss_sum = loss if self.loss_sum is None else self.loss_sum + loss
        self.rows += count
        self.bar.update(1)
        if self.bar.n >= run.steps_per_epoch:  # the full bar shows while validating
            self.bar.refresh()

    def close_bar(self, keep: bool = False) -> None:
        if self.bar is None:
            return
        bar, self.bar = self.bar, None
        _drawn.discard(self)
        bar.leave = keep
        bar.close()  # kept: redrawn and ended with a newline; otherwise erased

    def on_epoch_end(self, run, state: TrainState, logs: dict[str, float]) -> None:
        self.close_bar()
        prefix = "\r\x1b[2K" if self.live else ""
        self.stream.write(
            f"{prefix}epoch {int(logs['epoch'])}/{run.epochs} "
            f"{format_logs(logs)} ({logs['seconds']:.2f}s)\n"
        )
        self.stream.flush()
        self.finished += 1
        self.loss_sum, self.rows = None, 0
        if self.live and int(logs["epoch"]) < run.epochs and run.stop_reason is None:
            self._open_bar(run, int(logs["epoch"]))

    def on_fit_end(self, run, state: TrainState) -> None:
        self.close_bar()
        if run.stop_reason:
            self.stream.write(f"stopped: {run.stop_reason}\n")
