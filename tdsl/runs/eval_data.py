"""`tdsl eval RUN --data FILE`: score a new labelled file with the run's fitted transforms,
and, for classification, count a confusion matrix (printed, or drawn as a PNG).

The run's spec is reused with its data file replaced by FILE and every row in one split,
so the file is read exactly as the training data was (same columns, same class order).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from tdsl import spec as S
from tdsl.data import DataError, load_data
from tdsl.runs.data_cache import run_data_cache
from tdsl.runs.directories import RunError
from tdsl.runs.inference import LoadedModel, load_model
from tdsl.train.loops import eval_batch_size, evaluate, predict

# The field naming a source's data; its own val/test files are dropped.
MAIN_FIELD = {
    S.Table: "file",
    S.Tensors: "file",
    S.Text: "file",
    S.TimeSeries: "file",
    S.ImageFolder: "folder",
}


@attrs.frozen
class Scores:
    """Metrics of a run on a labelled file; for one binary or class output, its confusion
    matrix (rows: true class, columns: predicted) and the class names."""

    data: Path
    rows: int
    metrics: dict[str, float]
    confusion: np.ndarray | None = None
    classes: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"data": str(self.data), "rows": self.rows, "metrics": self.metrics}
        if self.confusion is not None:
            found["confusion"] = {"classes": list(self.classes), "matrix": self.confusion.tolist()}
        return found


def _spec_for(spec: S.Spec, path: Path) -> S.Spec:
    source = spec.data
    field = MAIN_FIELD.get(type(source))
    if field is None:
        raise RunError(
            f"--data reads a file of the run's data kind; a {source.kind!r} source has none"
        )
    changes: dict[str, Any] = {field: str(path.resolve())}
    for other in ("val_file", "test_file", "val_folder", "test_folder"):
        if hasattr(source, other):
            changes[other] = None
    if hasattr(source, "split"):
        changes["split"] = S.Split(train=1.0, val=0.0, test=0.0)
    return attrs.evolve(spec, data=attrs.evolve(source, **changes))


def evaluate_file(
    directory: str | os.PathLike,
    data: str | os.PathLike,
    which: str = "best",
    allow_imports: Sequence[str] = (),
) -> Scores:
    """The run's metrics on every row of `data` (a labelled file of the run's data kind)."""
    model = load_model(directory, which, allow_imports)
    path = Path(data)
    spec = _spec_for(model.spec, path)
    try:
        # Text: the ids the run kept, where FILE is one of the files it tokenized.
        with run_data_cache(directory, write=False, keep_new=False):
            rows = load_data(spec, model.fitted, allow_imports).train
    except DataError as exc:
        raise RunError(f"cannot use --data {path}: {exc.problems[0].message}") from None
    if rows is None or len(rows) == 0:
        raise RunError(f"--data {path} holds no rows to score")
    metrics = evaluate(model.program, model.state, rows)
    confusion, classes = _confusion(model, rows)
    return Scores(path, len(rows), metrics, confusion, classes)


def _confusion(model: LoadedModel, rows: Any) -> tuple[np.ndarray | None, tuple | None]:
    (decoder, *more) = model.decoders
    if more or decoder.kind not in ("binary", "class") or decoder.class_dim is not None:
        return None, None
    true, guessed = [], []
    for batch in rows.batches(eval_batch_size(model.spec)):
        prob = decoder.to_prob(predict(model.program, model.state, batch.features).float())
        if decoder.kind == "binary":
            if prob.reshape(len(prob), -1).shape[1] != 1:
                return None, None
            guessed.append((prob.reshape(-1) >= 0.5).long())
        else:
            guessed.append(prob.argmax(dim=-1).reshape(-1))
        true.append(batch.target.reshape(-1).long())
    count = 2 if decoder.kind == "binary" else int(prob.shape[-1])
    pairs = torch.cat(true) * count + torch.cat(guessed)
    matrix = torch.bincount(pairs, minlength=count * count).reshape(count, count).numpy()
    names = decoder.classes if decoder.classes and len(decoder.classes) == count else None
    return matrix, names or tuple(str(i) for i in range(count))


def confusion_text(matrix: np.ndarray, classes: Sequence[str]) -> str:
    """The matrix as an aligned table: a row per true class, a column per predicted one."""
    names = [str(c) for c in classes]
    width = max(len(n) for n in [*names, str(int(matrix.max())), "true"])
    lines = ["confusion matrix (rows: true class, columns: predicted)"]
    lines.append(" ".join(["true".ljust(width), *(n.rjust(width) for n in names)]))
    for name, row in zip(names, matrix, strict=True):
        lines.append(" ".join([name.ljust(width), *(str(int(v)).rjust(width) for v in row)]))
    return "\n".join(lines)


def draw_confusion(matrix: np.ndarray, classes: Sequence[str], out: Path) -> Path:
    """The matrix as an image (needs matplotlib: the plot extra)."""
    from tdsl.runs.plot import INSTALL_HINT, matplotlib_available

    if not matplotlib_available():
        raise RunError(
            f"--confusion draws with matplotlib, which is not installed ({INSTALL_HINT})"
        )
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from tdsl.train.atomic_files import atomic_write_bytes

    size = 2 + 0.5 * len(classes)
    figure = Figure(figsize=(size + 1, size))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes)
    ticks = range(len(classes))
    axes.set_xticks(ticks, labels=list(classes), rotation=45, ha="right")
    axes.set_yticks(ticks, labels=list(classes))
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    limit = matrix.max() / 2 if matrix.size else 0
    for (i, j), value in np.ndenumerate(matrix):
        color = "white" if value > limit else "black"
        axes.text(j, i, str(int(value)), ha="center", va="center", color=color)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format=out.suffix.lower().lstrip(".") or "png")
    atomic_write_bytes(out, buffer.getvalue())
    return out
