"""Runs on disk: `tdsl run`, `resume`, `eval` and `predict` over a run directory.

A run directory holds the resolved spec, the summary, `history.csv`/`history.jsonl`,
`checkpoints/last.pt` and `best.pt`, and `final.json`. A checkpoint holds everything the
run depends on (train state with RNG and schedule, history, callback state, the spec
text), so `resume` continues exactly where the last completed epoch left off.
"""

from __future__ import annotations

import difflib
import importlib.util
import io
import json
import os
import pickle
import re
import secrets
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import attrs
import numpy as np
import torch

from tdsl import spec as S
from tdsl.check.summary import summary
from tdsl.data import DataError, Fitted, load_data, read_input, with_absolute_paths
from tdsl.errors import NotRegularFileError, require_regular_file, special_file
from tdsl.registry.ops import DTYPES
from tdsl.runs.run_lock import RunError, claim_new_run, claim_run
from tdsl.spec.load_dump import dump, load
from tdsl.train import distributed
from tdsl.train.atomic_files import atomic_write_bytes, atomic_write_text
from tdsl.train.callbacks import strict_json
from tdsl.train.checkpoint_layout import layout_problem, not_a_checkpoint, refused_pickle
from tdsl.train.loops import FitResult, evaluate, fit, predict, train_epochs
from tdsl.train.program import Program, compile
from tdsl.train.standard import compose
from tdsl.train.state import TrainState


def default_run_dir(spec: S.Spec, root: Path = Path("runs")) -> Path:
    # Reduced to safe characters: no spec name (`../x`, `/abs`, NUL) leaves `root`. The
    # random suffix keeps runs of one spec started in the same second (a sweep) apart.
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", spec.name).lstrip(".") or "run"
    return root / f"{name[:80]}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


@attrs.frozen
class RunResult:
    """A finished (or early-stopped) run: its directory, each epoch's logs, the last state,
    the state of the checkpoint monitor's best epoch, and why it stopped early (None: it
    ran its epochs). Unpacks as `directory, result = tdsl.run(...)` too."""

    directory: Path
    history: list[dict[str, float]]
    state: TrainState
    best_state: TrainState | None
    stop_reason: str | None

    def __iter__(self):
        return iter((self.directory, self))


def _finish(directory: Path, result: FitResult) -> dict[str, Any]:
    final: dict[str, Any] = {
        "epochs": len(result.history),
        "stop_reason": result.stop_reason,
        "last": result.history[-1] if result.history else {},
    }
    best_path = directory / "checkpoints" / "best.pt"
    if best_path.exists():
        best = _load_checkpoint(best_path)
        final["best"] = best["history"][-1] if best["history"] else {}
    atomic_write_text(directory / "final.json", strict_json(final, indent=2) + "\n")
    return final


def run(
    spec: S.Spec,
    out: str | os.PathLike | None = None,
    *,
    callbacks: Sequence[Any] = (),
    progress: bool | TextIO = True,
    allow_imports: Sequence[str] = (),
    stream: TextIO | None = None,
    cost: bool = False,
) -> RunResult:
    """Train `spec` in a new run directory (`out`, default runs/NAME-TIME), as `tdsl run`
    does: validate (raising `SpecError` before anything is written), keep the spec, its
    summary and the data's fitted transforms, then `fit` with checkpoints, history files and
    final.json. `progress`: True prints to stderr, a stream prints there, False is quiet
    (`stream` is the older spelling of a stream). `cost` adds the memory and FLOPs estimate
    to summary.txt (opt-in: tracing a step imports torch's compiler stack, about a second)."""
    directory = Path(out) if out is not None else default_run_dir(spec)
    spec = with_absolute_paths(spec)  # data paths as absolute: the same files from any folder
    program = compile(spec, allow_imports)
    data = load_data(spec, allow_imports=allow_imports)
    lead = program.world is None or program.world.lead  # data-parallel: rank 0 writes
    lock = claim_new_run(directory) if lead else None  # nothing is written before this
    try:
        if lead:
            summary_text = summary(spec, allow_imports=allow_imports)
            processes = program.world.size if program.world is not None else 1
            if cost:
                summary_text += "\n\n" + cost_section(spec, processes, allow_imports)
            atomic_write_text(directory / "summary.txt", summary_text + "\n")
        shown = stream if stream is not None and progress is True else progress
        result = fit(
            program, program.init(), data, directory=directory, callbacks=callbacks, progress=shown
        )
        if lead:
            _finish(directory, result)
    finally:
        if lock is not None:
            lock.release()
    return RunResult(directory, result.history, result.state, result.best_state, result.stop_reason)


def cost_section(spec: S.Spec, processes: int = 1, allow_imports: Sequence[str] = ()) -> str:
    """The memory and FLOPs estimate for summary.txt; a note where it cannot be made."""
    from tdsl.check.cost import CostError, estimate
    from tdsl.check.cost_report import cost_text
    from tdsl.check.pipeline import validated

    _, inference = validated(spec, allow_imports)
    try:
        return cost_text(estimate(spec, inference, allow_imports, processes))
    except CostError as exc:
        return f"Cost: not estimated: {exc}"


def _load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise RunError(f"no checkpoint at {path}")
    try:
        require_regular_file(path)  # a FIFO would block the read forever
        loaded = torch.load(path, map_location="cpu", weights_only=True)  # any device -> CPU
    except NotRegularFileError as exc:
        raise RunError(f"cannot read checkpoint {exc}") from None
    except Exception as exc:  # a truncated or foreign file: say which and why
        if isinstance(exc, pickle.UnpicklingError) or "weights_only" in str(exc):
            # Objects beyond tensors (code, maybe): never torch's advice, weights_only=False.
            raise RunError(refused_pickle(path)) from None
        raise RunError(f"cannot read checkpoint {path}: {exc}") from None
    why = layout_problem(loaded)
    if why is not None:
        raise RunError(not_a_checkpoint(path, why))
    return loaded


def resume(
    directory: str | os.PathLike,
    *,
    callbacks: Sequence[Any] = (),
    progress: bool | TextIO = True,
    allow_imports: Sequence[str] = (),
    stream: TextIO | None = None,
) -> RunResult:
    """Continue the run in `directory` from its last checkpoint (a finished run is returned
    as it ended). `best_state` is read from the run's best checkpoint. Refused while another
    process writes there."""
    directory = Path(directory)
    # Rank 0 writes; a missing folder is reported as its missing checkpoint.
    lock = claim_run(directory) if distributed.is_lead() and directory.is_dir() else None
    try:
        return _resume(
            directory,
            callbacks=callbacks,
            progress=progress,
            allow_imports=allow_imports,
            stream=stream,
        )
    finally:
        if lock is not None:
            lock.release()


def _resume(
    directory: str | os.PathLike,
    *,
    callbacks: Sequence[Any] = (),
    progress: bool | TextIO = True,
    allow_imports: Sequence[str] = (),
    stream: TextIO | None = None,
) -> RunResult:
    """Continue the run in `directory` from its last checkpoint (a finished run is returned
    as it ended). `best_state` is read from the run's best checkpoint."""
    directory = Path(directory)
    checkpoint = _load_checkpoint(directory / "checkpoints" / "last.pt")
    spec = load(directory / "spec.yaml")
    current = dump(spec, defaults=True)
    if load(checkpoint["spec"]) != spec:
        diff = "".join(
            difflib.unified_diff(
                checkpoint["spec"].splitlines(True),
                current.splitlines(True),
                "checkpoint spec",
                str(directory / "spec.yaml"),
            )
        )
        raise RunError(f"the spec changed since the checkpoint was written:\n{diff}")
    program = compile(spec, allow_imports)
    lead = program.world is None or program.world.lead  # data-parallel: rank 0 writes
    shown = stream if stream is not None and progress is True else progress
    composed = compose(
        spec,
        directory=directory,
        spec_text=checkpoint["spec"],
        extra=callbacks,
        lead=lead,
        keep_best=False,  # the best state so far is on disk: best.pt
        progress=shown,
    )
    *stateful, checkpointer = composed.stateful
    for callback, saved in zip(stateful, checkpoint["callbacks"], strict=True):
        callback.load_state_dict(saved)
    checkpointer.load_state_dict(checkpoint["checkpointer"])
    state = TrainState.from_dict(checkpoint["state"], program.device)
    if lead:
        _say_resuming(spec, checkpoint)
    if checkpoint["stop_reason"]:
        result = FitResult(state, checkpoint["history"], checkpoint["stop_reason"])
    else:
        data = load_data(spec, Fitted.load(directory), allow_imports)
        result = train_epochs(
            program, state, data, callbacks=composed.ordered, history=checkpoint["history"]
        )
        if lead:
            _finish(directory, result)
    best = None
    best_path = directory / "checkpoints" / "best.pt"
    if best_path.exists():
        best = TrainState.from_dict(_load_checkpoint(best_path)["state"], program.device)
    return RunResult(directory, result.history, result.state, best, result.stop_reason)


def _say_resuming(spec: S.Spec, checkpoint: dict[str, Any]) -> None:
    done, total = len(checkpoint["history"]), spec.train.epochs
    if checkpoint["stop_reason"]:
        message = f"the run already stopped after epoch {done} of {total}"
        message += f" ({checkpoint['stop_reason']}); nothing to resume"
    elif done >= total:
        message = f"the run already finished its {total} epochs; nothing to resume"
    else:
        message = f"resuming at epoch {done + 1} of {total} from checkpoints/last.pt"
    print(message, file=sys.stderr)


def _program_and_state(
    directory: Path, which: str, allow_imports: Sequence[str] = ()
) -> tuple[Program, TrainState]:
    checkpoint = _load_checkpoint(Path(directory) / "checkpoints" / f"{which}.pt")
    program = compile(load(checkpoint["spec"]), allow_imports)
    return program, TrainState.from_dict(checkpoint["state"], program.device)


def evaluate_run(
    directory: Path, which: str = "best", allow_imports: Sequence[str] = ()
) -> dict[str, dict[str, float]]:
    """Metrics of the run's `which` checkpoint on its validation and test splits."""
    program, state = _program_and_state(directory, which, allow_imports)
    splits = load_data(program.spec, Fitted.load(directory), allow_imports)
    results = {}
    for name, data in (("val", splits.val), ("test", splits.test)):
        if data is not None and len(data):
            results[name] = evaluate(program, state, data)
    if not results:
        results["train"] = evaluate(program, state, splits.train)
    return results


def _read_features(path: Path) -> tuple[torch.Tensor, ...]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return (torch.from_numpy(np.load(path, allow_pickle=False)),)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                return tuple(torch.from_numpy(arrays[k]) for k in arrays.files)
        if suffix == ".pt":
            loaded = torch.load(path, weights_only=True)
            return tuple(loaded) if isinstance(loaded, list | tuple) else (loaded,)
        if suffix == ".csv":
            return (torch.from_numpy(np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float32)),)
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot read input {path}: {exc}") from None
    raise RunError(f"unsupported input format {suffix!r}; use .npy, .npz, .pt or .csv")


PREDICTION_FORMATS = (".csv", ".npy", ".json", ".parquet")


def prediction_format(path: Path) -> str:
    """The format `path`'s extension names: csv, npy, json or parquet. Raises RunError for
    any other extension, or for .parquet without pyarrow, so a caller can refuse before
    computing anything."""
    suffix = Path(path).suffix.lower()
    choices = ", ".join(PREDICTION_FORMATS)
    if suffix not in PREDICTION_FORMATS:
        what = f"unknown format {suffix!r}" if suffix else "no extension to choose a format"
        raise RunError(f"{path}: {what}; use {choices}")
    if suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        raise RunError(f"{path}: writing .parquet needs the pyarrow package (pip install pyarrow)")
    return suffix[1:]


def prediction_bytes(outputs: np.ndarray, kind: str) -> bytes:
    """`outputs` (one entry per input row) as a file of format `kind`. CSV and Parquet have
    one row per input row and the output's values flattened into columns; JSON is an array of
    the rows' outputs (nested lists shaped like the output, NaN and infinities as null)."""
    if kind == "npy":
        buffer = io.BytesIO()
        np.save(buffer, outputs, allow_pickle=False)
        return buffer.getvalue()
    flat = outputs.reshape(len(outputs), -1)
    if kind == "csv":
        text = io.StringIO()
        np.savetxt(text, flat, delimiter=",")
        return text.getvalue().encode()
    if kind == "json":
        # Each value's shortest decimal that reads back as the same float32.
        values = [float(v) for v in outputs.astype(str).flat]
        values = [v if np.isfinite(v) else None for v in values]
        rows = np.array(values, dtype=object).reshape(outputs.shape).tolist()
        return (json.dumps(rows, allow_nan=False) + "\n").encode()
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({f"output_{i}": flat[:, i] for i in range(flat.shape[1])})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def predict_run(
    directory: Path,
    input_path: Path,
    output_path: Path,
    which: str = "best",
    allow_imports: Sequence[str] = (),
) -> int:
    """Write the model's outputs for the rows in `input_path` to exactly `output_path`
    (atomically, creating missing folders), in the format its extension names; returns the
    row count. Several outputs are written side by side, each flattened."""
    kind = prediction_format(output_path)
    kind_of_input = special_file(input_path)  # a FIFO would block the read forever
    if kind_of_input not in (None, "a directory"):  # a folder of images or texts is read
        raise RunError(f"cannot use input {input_path}: {kind_of_input}, not a regular file")
    program, state = _program_and_state(directory, which, allow_imports)
    try:  # a CSV, texts, a series or images in the source's format, through its transforms
        features = read_input(program.spec, Fitted.load(directory), Path(input_path))
    except DataError as exc:
        raise RunError(f"cannot use input {input_path}: {exc.problems[0].message}") from None
    if features is None:
        features = _read_features(Path(input_path))
    declared = program.spec.model.inputs
    if len(features) != len(declared):
        raise RunError(
            f"the model takes {len(declared)} input(s), {input_path} holds {len(features)}"
        )
    for item, tensor in zip(declared, features, strict=True):
        if tuple(tensor.shape[1:]) != item.shape:
            raise RunError(
                f"input {item.name!r} expects rows of shape {list(item.shape)}, "
                f"{input_path} has {list(tensor.shape[1:])}"
            )
    features = tuple(t.to(DTYPES[i.dtype]) for t, i in zip(features, declared, strict=True))
    outputs = predict(program, state, features)
    if isinstance(outputs, tuple):  # several outputs: side by side, in model.outputs order
        outputs = torch.cat([o.reshape(len(o), -1) for o in outputs], dim=1)
    output_path = Path(output_path)
    atomic_write_bytes(output_path, prediction_bytes(outputs.numpy(), kind))
    # The atomic write's temporary file is private (0600); predictions are made to be
    # shared, so they get the mode a plain open() would have given them.
    umask = os.umask(0o022)
    os.umask(umask)
    output_path.chmod(0o666 & ~umask)
    return len(outputs)
