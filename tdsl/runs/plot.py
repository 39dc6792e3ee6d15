"""`tdsl plot`: a run's training and validation curves, one panel per metric, as an image.

Reads the run directory's `history.jsonl` and draws, as the seeds' `plot_metric` does, the
training values as a dashed blue line and the validation values as a solid red one against
the epoch. matplotlib is an optional extra (`pip install matplotlib`); the figure is drawn
on an Agg canvas of its own, so no global pyplot state or display is touched.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tdsl.errors import TdslError
from tdsl.wording import did_you_mean, install_hint

INSTALL_HINT = install_hint("matplotlib", "plot")
FORMATS = (".png", ".svg", ".pdf")
DEFAULT_NAME = "curves.png"
# History columns that are bookkeeping, not curves worth a default panel.
_NOT_CURVES = ("epoch", "seconds", "compile_seconds", "compile_cached")


class PlotError(TdslError):
    """The run's curves cannot be drawn as asked."""


def matplotlib_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def read_history(run_dir: Path) -> list[dict[str, float]]:
    """The rows of a run directory's history.jsonl, one per epoch."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PlotError(f"no run directory {run_dir}")
    path = run_dir / "history.jsonl"
    if not path.is_file():
        raise PlotError(f"{run_dir} has no history.jsonl (has a run finished an epoch there?)")
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            if line.strip():
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError(f"line {number} is not an object")
                rows.append(row)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PlotError(f"cannot read {path}: {exc}") from None
    if not rows:
        raise PlotError(f"{path} is empty: no epoch has finished yet")
    return rows


def available_metrics(history: Sequence[dict[str, Any]]) -> list[str]:
    """Every curve the history holds, by its training name (`loss`, `accuracy`, `lr`)."""
    names: list[str] = []
    for row in history:
        for key in row:
            name = key.removeprefix("val_")
            if key not in _NOT_CURVES and name not in names:
                names.append(name)
    return names


def default_metrics(run_dir: Path, history: Sequence[dict[str, Any]]) -> list[str]:
    """The loss plus the spec's metrics, as the run directory's spec.yaml names them."""
    found = available_metrics(history)
    try:
        from tdsl.spec.load_dump import load

        spec = load(Path(run_dir) / "spec.yaml")
        wanted = ["loss", *(metric.kind for metric in spec.metrics)]
    except (TdslError, OSError):  # no readable spec: every curve but the learning rate
        wanted = [name for name in found if name != "lr"]
    return [name for name in wanted if name in found]


def _series(history: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    epochs, values = [], []
    for index, row in enumerate(history, 1):
        value = row.get(key)
        if isinstance(value, int | float):
            epochs.append(float(row.get("epoch", index)))
            values.append(float(value))
    return epochs, values


def best_epoch(run_dir: Path, history: Sequence[dict[str, Any]]) -> int | None:
    """The epoch with the best value of the run's checkpoint monitor (None if unknown)."""
    try:
        from tdsl.check.training_setup import default_monitor
        from tdsl.spec.load_dump import load
        from tdsl.train.callbacks import resolve_mode

        spec = load(Path(run_dir) / "spec.yaml")
        monitor = spec.train.checkpoint.monitor or default_monitor(spec)
        mode = resolve_mode(monitor, spec.train.checkpoint.mode)
    except (TdslError, OSError):
        return None
    epochs, values = _series(history, monitor)
    sign = 1.0 if mode == "max" else -1.0
    scored = [(sign * v, e) for e, v in zip(epochs, values, strict=True) if not math.isnan(v)]
    if not scored:
        return None
    index = max(range(len(scored)), key=lambda i: scored[i][0])  # the first of equals
    return int(scored[index][1])


def plot_run(
    run_dir: str | Path,
    metrics: Sequence[str] = (),
    out: str | Path | None = None,
    log: bool = False,
) -> Path:
    """Draw the run's curves for `metrics` (default: the loss and the spec's metrics) to
    `out` (default RUN_DIR/curves.png; .png, .svg or .pdf), the best epoch marked; `log`
    draws the values on a log scale. Returns the path written."""
    if not matplotlib_available():
        raise PlotError(f"plotting needs matplotlib, which is not installed ({INSTALL_HINT})")
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / DEFAULT_NAME
    if out.suffix.lower() not in FORMATS:
        raise PlotError(f"cannot draw {out}: the file must end in {', '.join(FORMATS)}")
    history = read_history(run_dir)
    found = available_metrics(history)
    chosen = []
    for name in metrics:
        plain = name.removeprefix("val_") if name.removeprefix("val_") in found else name
        if plain not in found:
            hint = did_you_mean(plain, found)
            raise PlotError(
                f"the run has no metric {name!r}"
                + (f" ({hint})" if hint else "")
                + f"; it has {', '.join(found)}"
            )
        if plain not in chosen:
            chosen.append(plain)
    chosen = chosen or default_metrics(run_dir, history)
    figure = _draw(history, chosen, run_dir.name, best_epoch(run_dir, history), log)
    try:
        figure.savefig(out)
    except OSError as exc:
        raise PlotError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out


def _draw(
    history: Sequence[dict[str, Any]],
    names: Sequence[str],
    title: str,
    best: int | None = None,
    log: bool = False,
) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = min(len(names), 3)
    rows = math.ceil(len(names) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.2 * rows), dpi=90, layout="constrained")
    FigureCanvasAgg(figure)  # the Agg canvas renders savefig without a display
    figure.suptitle(title)
    for index, name in enumerate(names):
        axes = figure.add_subplot(rows, columns, index + 1)
        train, val = _series(history, name), _series(history, f"val_{name}")
        if train[1]:
            axes.plot(*train, "bo--", markersize=3, label=f"train_{name}" if val[1] else name)
        if val[1]:
            axes.plot(*val, "ro-", markersize=3, label=f"val_{name}")
        if best is not None:
            axes.axvline(best, color="grey", linestyle=":", label=f"best epoch {best}")
        if log:
            axes.set_yscale("log")
        axes.set_title(f"Training and validation {name}" if val[1] else name)
        axes.set_xlabel("Epochs")
        axes.set_ylabel(name)
        axes.legend()
    return figure
