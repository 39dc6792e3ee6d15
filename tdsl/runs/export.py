"""`tdsl export RUN --format torchscript | exported | onnx`: the run's module as a file other
programs load without tdsl, with a dynamic batch dimension, checked against tdsl's own
outputs before the command says it worked.

The export traces seeded rows made from the model's declared inputs, never the run's data:
torchscript and torch.export keep the example in the file, so the file is the same bytes
whether the training data is still there or not, and holds none of it. After writing, the
file is loaded back and run on those rows, and on validation rows where the data is still
readable, in two batch sizes (the second proves the batch dimension is dynamic); the largest
difference from tdsl's outputs is reported, and a difference above the tolerance fails the
export.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from tdsl.data import DataError, data_signature, load_data
from tdsl.registry.ops import DTYPES
from tdsl.runs.data_cache import run_data_cache
from tdsl.runs.directories import RunError
from tdsl.runs.inference import LoadedModel, checked_features, load_model
from tdsl.runs.recorded_data import run_signature
from tdsl.wording import install_hint

FORMATS = {"torchscript": ".torchscript.pt", "exported": ".pt2", "onnx": ".onnx"}
ONNX_HINT = "ONNX export needs onnx, onnxruntime and onnxscript: " + install_hint(
    "onnx onnxruntime onnxscript", "onnx"
)
CHECK_ROWS = (5, 3)  # two batch sizes, neither the size the export traced with
EXAMPLE_ROWS = 2
SEED = 0  # of the seeded rows


@attrs.frozen
class Exported:
    path: Path
    format: str
    max_abs_diff: float
    tolerance: float
    rows: int  # rows the check ran on
    source: str  # where those rows came from


def default_path(directory: Path, fmt: str, which: str) -> Path:
    return Path(directory) / f"{which}{FORMATS[fmt]}"


def export_run(
    directory: str | os.PathLike,
    fmt: str,
    which: str = "best",
    out: str | os.PathLike | None = None,
    allow_imports: Sequence[str] = (),
    tolerance: float = 1e-4,
) -> Exported:
    """Export the run's `which` checkpoint as `fmt`, check the file against tdsl's outputs,
    and return what was written and measured. Raises `RunError` for a format that cannot
    hold the graph, a missing optional package, or a mismatch above `tolerance` (scaled by
    the outputs' magnitude)."""
    if fmt not in FORMATS:
        raise RunError(f"unknown export format {fmt!r}; use {', '.join(FORMATS)}")
    if fmt == "onnx" and not all(
        importlib.util.find_spec(m) for m in ("onnx", "onnxruntime", "onnxscript")
    ):
        raise RunError(ONNX_HINT)
    directory = Path(directory)
    path = Path(out) if out is not None else default_path(directory, fmt, which)
    model = load_model(directory, which, allow_imports)
    seeded = seeded_rows(model)
    also, source = _data_rows(model)
    module = model.module().to("cpu")
    diff, limit = export_module(module, fmt, path, seeded, model.outputs, tolerance, also)
    rows = sum(min(len(f[0]), max(CHECK_ROWS)) for f in (seeded, *also))
    return Exported(path, fmt, diff, limit, rows, source)


def export_module(
    module: nn.Module,
    fmt: str,
    path: Path,
    features: tuple[torch.Tensor, ...],
    reference: Callable[[tuple[torch.Tensor, ...]], Any],
    tolerance: float = 1e-4,
    also: Sequence[tuple[torch.Tensor, ...]] = (),
) -> tuple[float, float]:
    """Write `module` (on the CPU, in eval mode) to `path` as `fmt`, traced on the first rows
    of `features`, load it back and compare it with `reference` on `features` (and each of
    `also`) in batches of each of CHECK_ROWS; returns (max abs diff, the tolerance scaled by
    the outputs' magnitude)."""
    example = tuple(f[:EXAMPLE_ROWS] for f in features)
    writer, loader = _FORMATS[fmt]
    try:
        with _quiet():
            data = writer(module, example)
    except Exception as exc:  # each exporter raises its own kinds; one line says which
        raise RunError(f"cannot export as {fmt}: {_summary(exc)}") from None
    _write(path, data)
    try:
        with _quiet():
            run = loader(path)
    except Exception as exc:
        raise RunError(f"{path} was written but cannot be loaded back: {_summary(exc)}") from None
    diff, scale = 0.0, 1.0
    for rows, checked in ((r, c) for c in (features, *also) for r in CHECK_ROWS):
        batch = tuple(f[:rows] for f in checked)
        expected = _flat(reference(batch))
        try:
            with _quiet():
                got = _flat(run(batch))
        except Exception as exc:
            raise RunError(
                f"the {fmt} file {path} fails on a batch of {rows} rows: {_summary(exc)}"
            ) from None
        if [g.shape for g in got] != [e.shape for e in expected]:
            raise RunError(f"the {fmt} file {path} gives outputs of another shape")
        for g, e in zip(got, expected, strict=True):
            diff = max(diff, float((g.float() - e.float()).abs().max()))
            scale = max(scale, float(e.float().abs().max()))
    if diff > tolerance * scale:
        raise RunError(
            f"the {fmt} file {path} differs from tdsl's outputs by up to {diff:.3g} "
            f"(tolerance {tolerance * scale:.3g}); it is left there for inspection"
        )
    return diff, tolerance * scale


def seeded_rows(model: LoadedModel) -> tuple[torch.Tensor, ...]:
    """Rows of the model's declared inputs drawn from a fixed seed, the same with or without
    the run's data: normal floats, and integer inputs as ids below the data's id limit (as
    the run recorded it; 0 where unknown)."""
    generator = torch.Generator().manual_seed(SEED)
    limit = _id_limit(model)
    rows = []
    for item in model.spec.model.inputs:
        shape = (max(CHECK_ROWS), *item.shape)
        if DTYPES[item.dtype].is_floating_point:
            rows.append(torch.randn(shape, generator=generator))
        else:
            rows.append(torch.randint(0, max(limit or 1, 1), shape, generator=generator))
    return checked_features(model.spec, tuple(rows), "the seeded rows")


def _id_limit(model: LoadedModel) -> int | None:
    try:
        directory = model.directory
        with run_data_cache(directory, write=False), run_signature(directory, model.spec):
            return data_signature(model.spec).id_limit
    except DataError:  # a run from before signatures were recorded, its data gone
        return None


def _data_rows(model: LoadedModel) -> tuple[tuple[tuple[torch.Tensor, ...], ...], str]:
    """Up to five validation rows (test or training rows where there are none), checked as
    well where the run's data can still be read, and what the check ran on."""
    try:
        with run_data_cache(model.directory, write=False):  # text: the ids the run kept
            splits = load_data(model.spec, model.fitted)
    except DataError:
        return (), "seeded rows (the run's data is unreadable)"
    for name in ("val", "test", "train"):
        rows = getattr(splits, name, None)
        if rows is not None and len(rows) >= max(CHECK_ROWS):
            batch = next(rows.batches(max(CHECK_ROWS)))
            features = checked_features(model.spec, tuple(batch.features), name)
            return (features,), f"seeded rows and {name} rows"
    return (), "seeded rows"


def _flat(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value.detach().cpu()]
    if isinstance(value, dict):
        return [v.detach().cpu() for v in value.values()]
    return [torch.as_tensor(v).detach().cpu() for v in value]


def _summary(exc: BaseException) -> str:
    """The exporter's message in one line: its first line, without torch's advice."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # the exporters colour their messages
    text = "".join(c if c.isprintable() else "?" for c in text)
    return f"{type(exc).__name__}: {text[:300]}"


@contextlib.contextmanager
def _quiet():
    """The exporters warn and print at length; their verdict is what counts."""
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def _write(path: Path, data: bytes) -> None:
    from tdsl.train.atomic_files import atomic_write_bytes

    atomic_write_bytes(path, data)


def _batch_dims(example: tuple[torch.Tensor, ...]) -> tuple[tuple[dict[int, Any], ...]]:
    # The module's forward takes `*inputs`: one argument, a tuple of the inputs.
    batch = torch.export.Dim("batch", min=1)
    return (tuple({0: batch} for _ in example),)


def _torchscript(module: nn.Module, example: tuple[torch.Tensor, ...]) -> bytes:
    traced = torch.jit.trace(module, example, check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    return buffer.getvalue()


def _load_torchscript(path: Path) -> Callable[[tuple[torch.Tensor, ...]], Any]:
    loaded = torch.jit.load(str(path), map_location="cpu")
    return lambda batch: loaded(*batch)


def _exported(module: nn.Module, example: tuple[torch.Tensor, ...]) -> bytes:
    program = torch.export.export(module, example, dynamic_shapes=_batch_dims(example))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def _load_exported(path: Path) -> Callable[[tuple[torch.Tensor, ...]], Any]:
    loaded = torch.export.load(str(path)).module()
    return lambda batch: loaded(*batch)


def _onnx(module: nn.Module, example: tuple[torch.Tensor, ...]) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "model.onnx"
        program = torch.onnx.export(
            module,
            example,
            dynamo=True,
            dynamic_shapes=_batch_dims(example),
            input_names=[f"input_{i}" for i in range(len(example))],
            verbose=False,
        )
        program.save(str(target), external_data=False)
        return target.read_bytes()


def _load_onnx(path: Path) -> Callable[[tuple[torch.Tensor, ...]], Any]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(batch: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        feeds = {n: t.numpy() for n, t in zip(names, batch, strict=True)}
        return [torch.from_numpy(o) for o in session.run(None, feeds)]

    return run


_FORMATS = {
    "torchscript": (_torchscript, _load_torchscript),
    "exported": (_exported, _load_exported),
    "onnx": (_onnx, _load_onnx),
}
