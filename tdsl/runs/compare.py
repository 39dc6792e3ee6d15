"""`tdsl compare`: runs side by side, as a table and optionally as overlaid curves.

Each row is a run: the spec values that differ between the runs compared (read from each
run directory's `spec.yaml`, so overrides and edited specs alike show), the best value of
the run's monitor and its epoch, the last epoch's metrics and the training time. A sweep
directory stands for all its trials.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from tdsl.errors import TdslError
from tdsl.runs.plot import _series, matplotlib_available, read_history
from tdsl.runs.sweep import STATE_FILE, read_state
from tdsl.spec.located_yaml import parse, read_text
from tdsl.train.callbacks import resolve_mode
from tdsl.wording import did_you_mean, show

_NOT_SHOWN = ("epoch", "seconds", "lr", "compile_cached")


class CompareError(TdslError):
    """Runs cannot be compared as asked."""


@attrs.frozen
class RunRow:
    label: str
    directory: Path
    spec: dict[str, Any]
    history: list[dict[str, Any]]
    monitor: str
    mode: str

    @property
    def best(self) -> tuple[float | None, int | None]:
        scored = [
            (row[self.monitor], int(row.get("epoch", i)))
            for i, row in enumerate(self.history, 1)
            if isinstance(row.get(self.monitor), int | float) and not math.isnan(row[self.monitor])
        ]
        if not scored:
            return None, None
        pick = max if self.mode == "max" else min
        return pick(scored, key=lambda pair: pair[0])

    @property
    def last(self) -> dict[str, Any]:
        return {k: v for k, v in self.history[-1].items() if k not in _NOT_SHOWN}

    @property
    def seconds(self) -> float:
        return sum(row.get("seconds") or 0.0 for row in self.history)


def run_dirs(paths: Sequence[str | Path]) -> list[tuple[str, Path]]:
    """(label, run directory) for each run given, a sweep's trials in its place."""
    found = []
    for given in paths:
        path = Path(given)
        if (path / STATE_FILE).is_file():
            for trial in read_state(path)["trials"]:
                if (path / trial["name"] / "history.jsonl").is_file():
                    found.append((str(Path(given) / trial["name"]), path / trial["name"]))
        elif (path / "spec.yaml").is_file():
            found.append((str(given), path))
        else:
            raise CompareError(f"{given} is neither a run directory nor a sweep directory")
    if not found:
        raise CompareError("no run to compare has finished an epoch yet")
    return found


def read_run(label: str, directory: Path) -> RunRow:
    from tdsl.check.training_setup import default_monitor
    from tdsl.spec.load_dump import load

    try:
        data = parse(read_text(directory / "spec.yaml"), str(directory))[0]
        spec = load(directory / "spec.yaml")
    except (OSError, UnicodeDecodeError, TdslError) as exc:
        raise CompareError(f"cannot read {directory / 'spec.yaml'}: {exc}") from None
    monitor = spec.train.checkpoint.monitor or default_monitor(spec)
    mode = resolve_mode(monitor, spec.train.checkpoint.mode)
    return RunRow(label, directory, _flat(data), read_history(directory), monitor, mode)


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    """`{"optimizer": {"lr": 0.1}}` -> `{"optimizer.lr": 0.1}`, list items as `[i]`, so a
    table names the one value that differs (`model.layers[0].out_features`)."""
    if isinstance(data, dict) and data:
        flat = {}
        for key, value in data.items():
            flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(data, list) and data:
        flat = {}
        for index, value in enumerate(data):
            flat.update(_flat(value, f"{prefix}[{index}]"))
        return flat
    return {prefix: data}


def differing(rows: Sequence[RunRow]) -> list[str]:
    """The spec paths whose values are not the same in every run."""
    paths: list[str] = []
    for row in rows:
        paths += [p for p in row.spec if p not in paths]
    missing = object()
    return [
        p for p in paths if len({json.dumps(r.spec.get(p, missing), default=str) for r in rows}) > 1
    ]


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else show(value, 40)


def table(rows: Sequence[RunRow], sort: str | None = None) -> str:
    """The comparison table, best run first (by the monitor, or by the `sort` metric)."""
    rows = list(rows)
    metrics: list[str] = []
    for row in rows:
        metrics += [m for m in row.last if m not in metrics]
    monitors = {row.monitor for row in rows}
    best_header = f"best {rows[0].monitor}" if len(monitors) == 1 else "best"
    if sort is None:
        modes = {row.mode for row in rows}
        descending = modes == {"max"}
        rows.sort(key=lambda r: _key(r.best[0], descending))
    else:
        if sort not in metrics:
            hint = did_you_mean(sort, metrics)
            raise CompareError(f"--sort: no metric {sort!r}" + (f" ({hint})" if hint else ""))
        descending = resolve_mode(sort, "auto") == "max"
        rows.sort(key=lambda r: _key(r.last.get(sort), descending))
    paths = differing(rows)
    header = ["run", *paths, best_header, "epoch", *metrics, "time"]
    if len(monitors) > 1:
        header.insert(len(paths) + 1, "monitor")
    body = []
    for row in rows:
        value, epoch = row.best
        cells = [row.label, *(_number(row.spec.get(p)) for p in paths)]
        if len(monitors) > 1:
            cells.append(row.monitor)
        cells += [_number(value), _number(epoch), *(_number(row.last.get(m)) for m in metrics)]
        body.append([*cells, f"({row.seconds:.1f}s)"])
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    widths[-1] = len(header[-1])  # the time is last: its width may vary, the rule need not
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
             for line in [header, ["-" * w for w in widths], *body]]  # fmt: skip
    return "\n".join(lines)


def _key(value: Any, descending: bool) -> tuple[int, float]:
    """Missing and NaN values sort last either way."""
    if not isinstance(value, int | float) or math.isnan(value):
        return (1, 0.0)
    return (0, -value if descending else value)


def plot_runs(rows: Sequence[RunRow], out: str | Path, metrics: Sequence[str] = ()) -> Path:
    """The runs' curves overlaid: a panel per metric (default: the loss and the monitor),
    a line per run (solid: validation, dashed: training)."""
    from tdsl.runs.plot import FORMATS, INSTALL_HINT, PlotError

    if not matplotlib_available():
        raise PlotError(f"plotting needs matplotlib, which is not installed ({INSTALL_HINT})")
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise PlotError(f"cannot draw {out}: the file must end in {', '.join(FORMATS)}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(metrics) or list(dict.fromkeys(["loss", rows[0].monitor.removeprefix("val_")]))
    figure = Figure(figsize=(5.0 * len(names), 3.6), dpi=90, layout="constrained")
    FigureCanvasAgg(figure)
    for index, name in enumerate(names):
        axes = figure.add_subplot(1, len(names), index + 1)
        for number, row in enumerate(rows):
            colour = f"C{number % 10}"
            train, val = _series(row.history, name), _series(row.history, f"val_{name}")
            if val[1]:
                axes.plot(*val, "-", color=colour, label=row.label)
            if train[1]:
                axes.plot(*train, "--", color=colour, label=None if val[1] else row.label)
        axes.set_title(name)
        axes.set_xlabel("Epochs")
        axes.legend(fontsize="small")
    try:
        figure.savefig(out)
    except OSError as exc:
        raise PlotError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out
