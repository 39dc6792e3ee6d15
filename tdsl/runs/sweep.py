"""`tdsl sweep`: many runs of one spec with different overrides, in one sweep directory.

A sweep directory (`runs/sweeps/NAME-TIME-XXXX/`) holds `sweep.json` (the spec, each
trial's overrides, status, exit code and the end of its stderr) and a run directory per
trial (`trial-000/`, ...). Every trial is validated before any starts. Trials run as
separate `tdsl run` processes, `parallel` at a time; a failed one is recorded and the others
go on. A trial is finished when its run directory has `final.json`, so `resume_sweep`
reruns only the others (continuing a trial from its last checkpoint when it has one).
"""

from __future__ import annotations

import itertools
import json
import random
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

from tdsl.runs.distributions import Distribution, SweepError, as_text, parse_grid
from tdsl.runs.run_lock import discard_unfinished
from tdsl.train.atomic_files import atomic_write_text

STATE_FILE = "sweep.json"
STDERR_LINES = 20  # of a failed trial's stderr kept in sweep.json


def plan(
    grid: Sequence[str] = (),
    params: Sequence[Distribution] = (),
    samples: int | None = None,
    seed: int = 0,
) -> list[list[str]]:
    """Each trial's `--set` overrides: every grid combination, times `samples` draws of the
    distributions (seeded, so the same command plans the same trials)."""
    axes = [parse_grid(text) for text in grid]
    names = [name for name, _ in axes]
    for name in names:
        if names.count(name) > 1:
            raise SweepError(f"--grid {name} is given twice")
    if params and samples is None:
        raise SweepError("--param draws values: give --random N (or --search) as well")
    rng = random.Random(seed)
    trials = []
    for combination in itertools.product(*(values for _, values in axes)):
        fixed = [f"{name}={value}" for name, value in zip(names, combination, strict=True)]
        for _ in range(samples or 1):
            drawn = [f"{d.path}={as_text(d.sample(rng))}" for d in params]
            trials.append(fixed + drawn)
    if not trials or trials == [[]]:
        raise SweepError("nothing to sweep: give --grid PATH=V1,V2 or --random N with --param")
    return trials


def check_trials(
    spec_file: Path, trials: Sequence[Sequence[str]], allow_imports: Sequence[str] = ()
) -> None:
    """Validate every trial's spec; raise listing each bad trial's overrides and problems."""
    from tdsl.check.pipeline import validate
    from tdsl.spec.overrides import apply_overrides

    failures = []
    for index, overrides in enumerate(trials):
        report = validate(
            spec_file, lambda data, o=overrides: apply_overrides(data, o), allow_imports
        )
        if not report.ok:
            shown = " ".join(overrides) or "(no overrides)"
            failures.append(f"trial {index:03d} ({shown}):\n{report.format()}")
    if failures:
        raise SweepError(
            f"{len(failures)} of {len(trials)} trials are invalid; none started\n"
            + "\n".join(failures)
        )


def new_sweep_dir(spec_name: str, root: Path = Path("runs") / "sweeps") -> Path:
    # A random suffix: two sweeps started in the same second get directories of their own.
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", spec_name).lstrip(".") or "sweep"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return root / f"{name[:80]}-{stamp}-{secrets.token_hex(2)}"


def trial_name(index: int) -> str:
    return f"trial-{index:03d}"


def create_sweep(
    directory: Path,
    spec_file: Path,
    trials: Sequence[Sequence[str]],
    allow_imports: Sequence[str] = (),
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a new sweep's `sweep.json`; refuses a directory that already holds a sweep."""
    if (directory / STATE_FILE).exists():
        raise SweepError(f"{directory} already holds a sweep; continue it with --resume")
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        "spec": str(spec_file.absolute()),
        "allow_imports": list(allow_imports),
        "trials": [
            {"name": trial_name(i), "overrides": list(o), "status": "pending"}
            for i, o in enumerate(trials)
        ],
        **(extra or {}),
    }
    write_state(directory, state)
    return state


def read_state(directory: Path) -> dict[str, Any]:
    path = directory / STATE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SweepError(f"{directory} is not a sweep directory (no {STATE_FILE})") from None
    except (OSError, ValueError) as exc:
        raise SweepError(f"cannot read {path}: {exc}") from None


def write_state(directory: Path, state: dict[str, Any]) -> None:
    atomic_write_text(directory / STATE_FILE, json.dumps(state, indent=2) + "\n")


def finished(run_dir: Path) -> bool:
    return (run_dir / "final.json").is_file()


class _Runner:
    """Runs the unfinished trials as processes, recording each in sweep.json as it ends."""

    def __init__(self, directory: Path, state: dict[str, Any], stream: TextIO):
        self.directory, self.state, self.stream = directory, state, stream
        self.lock = threading.Lock()
        self.processes: set[subprocess.Popen] = set()
        self.stopping = False

    def command(self, trial: dict[str, Any], run_dir: Path) -> list[str]:
        allowed = [a for p in self.state.get("allow_imports", []) for a in ("--allow-import", p)]
        if (run_dir / "checkpoints" / "last.pt").exists():  # interrupted: continue it
            return [sys.executable, "-m", "tdsl", "resume", str(run_dir), *allowed]
        sets = [a for o in trial["overrides"] for a in ("--set", o)]
        start = [sys.executable, "-m", "tdsl", "run", self.state["spec"], "--out", str(run_dir)]
        return [*start, *sets, *allowed]

    def one(self, trial: dict[str, Any]) -> None:
        run_dir = self.directory / trial["name"]
        with self.lock:
            if self.stopping:
                return
            run_dir.mkdir(parents=True, exist_ok=True)
            if not (run_dir / "checkpoints" / "last.pt").exists():
                # An attempt that ended before its first checkpoint: start it over (a new
                # run refuses a folder holding a run).
                discard_unfinished(run_dir)
            started = time.monotonic()
            command = self.command(trial, run_dir)
            with (
                open(run_dir / "stdout.log", "ab") as out,
                open(run_dir / "stderr.log", "ab") as err,
            ):
                process = subprocess.Popen(command, stdout=out, stderr=err)
            self.processes.add(process)
            trial["status"] = "running"
            write_state(self.directory, self.state)
        code = process.wait()
        with self.lock:
            self.processes.discard(process)
            trial["seconds"] = round(time.monotonic() - started, 2)
            trial["exit_code"] = code
            if finished(run_dir):  # stopped after its final.json was written: it finished
                trial["status"] = "finished"
                trial.pop("stderr_tail", None)
            else:
                trial["status"] = "interrupted" if self.stopping else "failed"
                trial["stderr_tail"] = _tail(run_dir / "stderr.log")
            write_state(self.directory, self.state)
            done = sum(t["status"] == "finished" for t in self.state["trials"])
            shown = " ".join(trial["overrides"])
            status = f"{trial['status']} ({done}/{len(self.state['trials'])} finished)"
            print(f"{trial['name']} {shown}: {status}", file=self.stream, flush=True)

    def stop(self) -> None:
        """Interrupt the running trials (each keeps its last checkpoint to resume from)."""
        with self.lock:
            self.stopping = True
            for process in self.processes:
                process.terminate()


def run_sweep(directory: Path, parallel: int = 1, stream: TextIO | None = None) -> dict[str, Any]:
    """Run every trial of the sweep not finished yet; returns the final state."""
    stream = stream or sys.stderr
    state = read_state(directory)
    todo = []
    for trial in state["trials"]:
        if finished(directory / trial["name"]):
            trial["status"] = "finished"
        else:
            todo.append(trial)
    write_state(directory, state)
    runner = _Runner(directory, state, stream)
    pool = ThreadPoolExecutor(max_workers=max(1, parallel))
    try:
        for future in [pool.submit(runner.one, trial) for trial in todo]:
            future.result()
    except KeyboardInterrupt:
        runner.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        for trial in state["trials"]:
            if trial["status"] == "running":
                trial["status"] = "interrupted"
        write_state(directory, state)
        raise
    pool.shutdown(wait=True)
    return state


def _tail(path: Path, lines: int = STDERR_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def summary_line(state: dict[str, Any]) -> str:
    counts: dict[str, int] = {}
    for trial in state["trials"]:
        counts[trial["status"]] = counts.get(trial["status"], 0) + 1
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def spec_name(spec_file: Path) -> str:
    from tdsl.spec.load_dump import load

    return load(spec_file).name
