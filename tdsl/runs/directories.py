"""Runs on disk: `tdsl run`, `eval` and `predict` over a run directory.

A run directory holds the resolved spec, the summary, `history.csv`/`history.jsonl`,
`checkpoints/last.pt` and `best.pt`, and `final.json`. `tdsl resume`, which continues a
run from its checkpoint, is in `tdsl.runs.resuming`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import attrs

from tdsl import spec as S
from tdsl.check.summary import summary
from tdsl.check.weights_setup import init_record, with_absolute_init, without_init
from tdsl.data import Fitted, data_signature, load_data, with_absolute_paths
from tdsl.data.data_root import accepts_data_root
from tdsl.runs.data_cache import keep_token_ids, run_data_cache
from tdsl.runs.drift import record_data, spec_edits
from tdsl.runs.recorded_data import record_signature, require_data, run_signature
from tdsl.runs.run_files import RunFileError, load_run_checkpoint
from tdsl.runs.run_lock import RunError, claim_new_run
from tdsl.spec.load_dump import load
from tdsl.special_files import special_file
from tdsl.train import compile_cache
from tdsl.train.atomic_files import atomic_write_text
from tdsl.train.callbacks import strict_json
from tdsl.train.checkpoint_files import read_checkpoint
from tdsl.train.loops import FitResult, evaluate, fit
from tdsl.train.program import Program, compile
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


def write_final(directory: Path, result: FitResult) -> dict[str, Any]:
    """final.json: the epochs run, why it stopped, the last and best epochs' logs."""
    final: dict[str, Any] = {
        "epochs": len(result.history),
        "stop_reason": result.stop_reason,
        "last": result.history[-1] if result.history else {},
    }
    best_path = directory / "checkpoints" / "best.pt"
    if best_path.exists():
        best = read_checkpoint(best_path)
        final["best"] = best["history"][-1] if best["history"] else {}
    started = directory / "init.json"
    if started.exists():  # where the starting weights came from (model.init)
        final["init"] = json.loads(started.read_text())
    atomic_write_text(directory / "final.json", strict_json(final, indent=2) + "\n")
    return final


@accepts_data_root
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
    spec = with_absolute_init(spec)
    with run_data_cache(directory, write=False):  # text: token ids kept once claimed
        program = compile(spec, allow_imports)
        data = load_data(spec, allow_imports=allow_imports)
        signature = data_signature(spec, allow_imports)  # read already: cached
    lead = program.world is None or program.world.lead  # data-parallel: rank 0 writes
    lock = claim_new_run(directory) if lead else None  # nothing is written before this
    try:
        if lead:
            keep_token_ids(directory)
            record_data(directory, spec)  # a resume says which data files changed since
            record_signature(directory, spec, signature)  # predict needs no data
            summary_text = summary(spec, allow_imports=allow_imports)
            processes = program.world.size if program.world is not None else 1
            if cost:
                summary_text += "\n\n" + cost_section(spec, processes, allow_imports)
            atomic_write_text(directory / "summary.txt", summary_text + "\n")
            record = init_record(spec)
            if record is not None:
                atomic_write_text(directory / "init.json", strict_json(record, indent=2) + "\n")
        shown = stream if stream is not None and progress is True else progress
        result = fit(
            program, program.init(), data, directory=directory, callbacks=callbacks, progress=shown
        )
        if lead:
            write_final(directory, result)
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


def load_checkpoint(directory: Path, which: str, command: str) -> dict[str, Any]:
    """Verified against its checksum; a damaged one's error offers the other if intact."""
    try:
        return load_run_checkpoint(directory, which, command)
    except RunFileError as exc:
        raise RunError(str(exc)) from None


def _program_and_state(
    directory: Path, which: str, allow_imports: Sequence[str] = (), needs_data: str = ""
) -> tuple[Program, TrainState]:
    """The run's program and `which` state; `needs_data`: the command, which reads the run's
    own rows, to name when they are gone (inference reads none)."""
    command = "use it with --checkpoint {which}"
    checkpoint = load_checkpoint(Path(directory), which, command)
    edited = spec_edits(Path(directory), checkpoint["spec"], which)
    if edited:
        print(edited, file=sys.stderr)
    spec = without_init(load(checkpoint["spec"]))
    if needs_data:
        require_data(directory, spec, needs_data)
    # Read only (no lock is held); the data's signature as the run recorded it: inference
    # needs no training data.
    with run_data_cache(directory, write=False), run_signature(directory, spec):
        program = compile(spec, allow_imports)
    if program.compile_pending:  # the forward pass compiles from the run's cache
        compile_cache.load(
            Path(directory) / compile_cache.CACHE_FILE, compile_cache.spec_key(program.spec)
        )
    return program, TrainState.from_dict(checkpoint["state"], program.device)


@accepts_data_root
def evaluate_run(
    directory: Path, which: str = "best", allow_imports: Sequence[str] = ()
) -> dict[str, dict[str, float]]:
    """Metrics of the run's `which` checkpoint on its validation and test splits."""
    program, state = _program_and_state(directory, which, allow_imports, needs_data="eval")
    with run_data_cache(directory, write=False):
        splits = load_data(program.spec, Fitted.load(directory), allow_imports)
    results = {}
    for name, data in (("val", splits.val), ("test", splits.test)):
        if data is not None and len(data):
            results[name] = evaluate(program, state, data)
    if not results:
        results["train"] = evaluate(program, state, splits.train)
    return results


@accepts_data_root
def predict_run(
    directory: Path,
    input_path: Path,
    output_path: Path,
    which: str = "best",
    allow_imports: Sequence[str] = (),
    keep: Sequence[str] = (),
    threshold: float = 0.5,
) -> int:
    """Write the decoded predictions for the rows in `input_path` to exactly `output_path`
    (atomically, creating missing folders), in the format its extension names; returns the
    row count. See `tdsl.runs.prediction_files.predict_file` (`keep`, `threshold`)."""
    from tdsl.runs.prediction_files import predict_file

    kind_of_input = special_file(input_path)  # a FIFO would block the read forever
    if kind_of_input not in (None, "a directory"):  # a folder of images or texts is read
        raise RunError(f"cannot use input {input_path}: {kind_of_input}, not a regular file")

    return predict_file(directory, input_path, output_path, which, allow_imports, keep, threshold)
