"""`tdsl sweep --search tpe|random`: a hyperparameter search on Optuna (`tdsl[search]`).

The study lives in `study.db` (SQLite) in the sweep directory, so a search can be resumed
and inspected with Optuna's own tools. Trials run in this process, each in its run
directory (`trial-003/`), reporting the monitored value every epoch; Optuna's median
pruner stops a trial whose value is worse than the median of earlier trials at that epoch.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from tdsl.runs.distributions import Distribution, SweepError, as_text
from tdsl.runs.sweep import finished, read_state, trial_name, write_state
from tdsl.wording import install_hint

INSTALL_HINT = install_hint("optuna", "search")
STUDY_FILE = "study.db"
STUDY_NAME = "tdsl"
SAMPLERS = ("tpe", "random")


def optuna_module() -> Any:
    try:
        return importlib.import_module("optuna")
    except ImportError:
        raise SweepError(f"--search needs the optuna package: {INSTALL_HINT}") from None


def storage_url(directory: Path) -> str:
    return f"sqlite:///{(directory / STUDY_FILE).absolute()}"


def boundary_trials(params: Sequence[Distribution]) -> list[list[str]]:
    """Overrides that put each parameter at each end (or each choice) with the others at
    their first: the specs a search may build, checked before it starts."""
    if not params:
        raise SweepError("--search needs the space to search: one or more --param")
    first = [f"{d.path}={as_text(d.values[0])}" for d in params]
    trials = []
    for index, dist in enumerate(params):
        for value in dist.values:
            trial = list(first)
            trial[index] = f"{dist.path}={as_text(value)}"
            if trial not in trials:
                trials.append(trial)
    return trials


class _Report:
    """A fit callback: reports the monitored value each epoch, and stops a pruned trial."""

    def __init__(self, trial: Any, monitor: str):
        self.trial, self.monitor = trial, monitor
        self.pruned = False

    def on_epoch_end(self, run, state, logs: dict[str, float]) -> None:
        value = logs.get(self.monitor)
        if value is None or math.isnan(value):
            return
        self.trial.report(value, int(logs["epoch"]))
        if self.trial.should_prune():
            self.pruned = True
            run.stop_reason = f"pruned at epoch {int(logs['epoch'])}: {self.monitor}={value:.4g}"


def _suggest(trial: Any, dist: Distribution) -> Any:
    if dist.kind == "choice":
        return trial.suggest_categorical(dist.path, list(dist.values))
    low, high = dist.values
    if dist.kind == "int_uniform":
        return trial.suggest_int(dist.path, low, high)
    return trial.suggest_float(dist.path, low, high, log=dist.kind == "log_uniform")


def best_value(history: Sequence[dict[str, Any]], monitor: str, mode: str) -> float:
    values = [row[monitor] for row in history if isinstance(row.get(monitor), int | float)]
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan
    return max(values) if mode == "max" else min(values)


def run_search(
    directory: Path,
    params: Sequence[Distribution],
    stream: TextIO,
) -> Any:
    """Run the search recorded in `directory`'s sweep.json until it has its trials."""
    from tdsl.runs.directories import run
    from tdsl.spec.load_dump import read_spec
    from tdsl.spec.overrides import apply_overrides

    optuna = optuna_module()
    state = read_state(directory)
    search = state["search"]
    samplers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=STUDY_NAME,
        storage=storage_url(directory),
        load_if_exists=True,
        direction="maximize" if search["mode"] == "max" else "minimize",
        sampler=samplers[search["sampler"]](seed=search["seed"]),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    states = optuna.trial.TrialState
    for old in study.get_trials(deepcopy=False, states=(states.RUNNING,)):
        study.tell(old.number, state=states.FAIL)  # interrupted: this process runs them all
    ended = (states.COMPLETE, states.PRUNED, states.FAIL)
    base = list(state.get("overrides", []))

    def objective(trial: Any) -> float:
        values = {d.path: _suggest(trial, d) for d in params}
        overrides = [*base, *(f"{path}={as_text(v)}" for path, v in values.items())]
        name = trial_name(trial.number)
        record = {"name": name, "overrides": overrides, "status": "running"}
        state["trials"] = [t for t in state["trials"] if t["name"] != name] + [record]
        write_state(directory, state)
        spec, problems = read_spec(Path(state["spec"]), lambda d: apply_overrides(d, overrides))
        reporter = _Report(trial, search["monitor"])
        run_dir = directory / name
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            if spec is None:
                raise SweepError("\n".join(p.format() for p in problems))
            with open(run_dir / "stdout.log", "w", encoding="utf-8") as out:
                _, result = run(
                    spec,
                    run_dir,
                    stream=out,
                    callbacks=[reporter],
                    allow_imports=state.get("allow_imports", []),
                )
        except Exception as exc:  # noqa: BLE001 - recorded, and the search goes on
            record.update(status="failed", error=str(exc)[-2000:])
            write_state(directory, state)
            print(f"{name} {' '.join(overrides)}: failed", file=stream, flush=True)
            raise
        value = best_value(result.history, search["monitor"], search["mode"])
        record.update(status="pruned" if reporter.pruned else "finished", value=value)
        write_state(directory, state)
        shown = f"{search['monitor']}={value:.4g}"
        print(f"{name} {' '.join(overrides)}: {record['status']} {shown}", file=stream, flush=True)
        if reporter.pruned:
            raise optuna.TrialPruned()
        return value

    while len(study.get_trials(deepcopy=False, states=ended)) < search["trials"]:
        study.optimize(objective, n_trials=1, catch=(Exception,))
    for record in state["trials"]:  # a pruned trial has final.json too: it is done
        if record["status"] == "pruned" and not finished(directory / record["name"]):
            record["status"] = "failed"
    write_state(directory, state)
    return study
