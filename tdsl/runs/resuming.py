"""`tdsl resume`: continuing a run directory from its last (or best) checkpoint.

The checkpoint holds everything the run depends on (train state with RNG and schedule,
history, callback state, the spec text), so training continues exactly where the last
completed epoch left off; a finished run is returned as it ended.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from tdsl import spec as S
from tdsl.check.weights_setup import without_init
from tdsl.data import Fitted, load_data
from tdsl.data.data_root import accepts_data_root
from tdsl.runs.data_cache import run_data_cache
from tdsl.runs.directories import RunResult, load_checkpoint, write_final
from tdsl.runs.drift import data_drift
from tdsl.runs.recorded_data import require_data, run_signature
from tdsl.runs.run_files import RunFileError
from tdsl.runs.run_files import check_writable as check_writable_run
from tdsl.runs.run_lock import RunError, claim_run
from tdsl.spec.load_dump import dump, load
from tdsl.train import distributed
from tdsl.train.loops import train_epochs
from tdsl.train.program import Program, compile
from tdsl.train.standard import compose
from tdsl.train.state import TrainState


@accepts_data_root
def resume(
    directory: str | os.PathLike,
    *,
    callbacks: Sequence[Any] = (),
    progress: bool | TextIO = True,
    allow_imports: Sequence[str] = (),
    stream: TextIO | None = None,
    which: str = "last",
) -> RunResult:
    """Continue the run in `directory` from its last checkpoint, or from its best with
    `which="best"` (a finished run is returned as it ended). `best_state` is read from the
    run's best checkpoint. Refused while another process writes there."""
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
            which=which,
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
    which: str = "last",
) -> RunResult:
    directory = Path(directory)
    command = f"continue from it with `tdsl resume {directory} --checkpoint {{which}}`"
    checkpoint = load_checkpoint(directory, which, command)
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
    if checkpoint["stop_reason"] or len(checkpoint["history"]) >= spec.train.epochs:
        return _finished(directory, spec, checkpoint, which, allow_imports)
    require_data(directory, spec, "resume")
    # The run's own checkpoint holds its weights: model.init is neither read nor re-applied.
    with run_data_cache(directory, write=False):  # the token ids the run kept, if any
        program = compile(without_init(spec), allow_imports)
    lead = program.world is None or program.world.lead  # data-parallel: rank 0 writes
    if lead:  # found now, not after an epoch of training
        try:
            check_writable_run(directory)
        except RunFileError as exc:
            raise RunError(str(exc)) from None
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
        _say_resuming(spec, checkpoint, which)
        for line in data_drift(directory):
            print(f"warning: {line}; training goes on with it as it is now", file=sys.stderr)
    with run_data_cache(directory, write=lead):
        data = load_data(spec, Fitted.load(directory), allow_imports)
    result = train_epochs(
        program, state, data, callbacks=composed.ordered, history=checkpoint["history"]
    )
    if lead:
        write_final(directory, result)
    return RunResult(
        directory, result.history, result.state, _best(directory, program), result.stop_reason
    )


def _finished(
    directory: Path,
    spec: S.Spec,
    checkpoint: dict[str, Any],
    which: str,
    allow_imports: Sequence[str],
) -> RunResult:
    """A run that ran its epochs (or stopped early) as it ended: no training, so neither its
    data nor its fitted transforms are read (the recorded signature compiles the spec)."""
    with run_data_cache(directory, write=False), run_signature(directory, spec):
        program = compile(without_init(spec), allow_imports)
    if program.world is None or program.world.lead:
        _say_resuming(spec, checkpoint, which)
    state = TrainState.from_dict(checkpoint["state"], program.device)
    history, stop_reason = checkpoint["history"], checkpoint["stop_reason"]
    return RunResult(directory, history, state, _best(directory, program), stop_reason)


def _best(directory: Path, program: Program) -> TrainState | None:
    best_path = directory / "checkpoints" / "best.pt"
    if not best_path.exists():
        return None
    loaded = load_checkpoint(directory, "best", "")
    return TrainState.from_dict(loaded["state"], program.device)


def _say_resuming(spec: S.Spec, checkpoint: dict[str, Any], which: str) -> None:
    done, total = len(checkpoint["history"]), spec.train.epochs
    if checkpoint["stop_reason"]:
        message = f"the run already stopped after epoch {done} of {total}"
        message += f" ({checkpoint['stop_reason']}); nothing to resume"
    elif done >= total:
        message = f"the run already finished its {total} epochs; nothing to resume"
    else:
        message = f"resuming at epoch {done + 1} of {total} from checkpoints/{which}.pt"
    print(message, file=sys.stderr)
