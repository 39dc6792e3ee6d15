"""Optional MLflow tracking (`train.track: {mlflow: {uri: file:./mlruns, experiment: NAME}}`).

A `fit` callback that logs the resolved spec as params, each epoch's metrics (step: the
epoch), and at the end the last and best values, the run directory's spec and summary and
the best checkpoint as artefacts. MLflow is optional (`pip install mlflow`; the `track`
extra).
Tracking is a side channel: any failure (a missing package, an unreachable server) is a
warning, tracking stops, and training goes on.
"""

from __future__ import annotations

import importlib
import math
import warnings
from pathlib import Path
from typing import Any

import yaml

from tdsl.wording import install_hint

INSTALL_HINT = install_hint("mlflow", "track")
MAX_PARAM = 500  # characters of a param value MLflow keeps


class TrackingWarning(UserWarning):
    """Experiment tracking failed; training continues without it."""


def flat_params(data: Any, prefix: str = "") -> dict[str, str]:
    """`{"optimizer": {"lr": 0.1}}` -> `{"optimizer.lr": "0.1"}`; lists stay one value."""
    if isinstance(data, dict) and data:
        found: dict[str, str] = {}
        for key, value in data.items():
            found.update(flat_params(value, f"{prefix}.{key}" if prefix else str(key)))
        return found
    return {prefix: str(data)[:MAX_PARAM]}


class MlflowLogger:
    def __init__(self, directory: Path, spec_text: str, uri: str, experiment: str):
        self.directory, self.spec_text = Path(directory), spec_text
        self.uri, self.experiment = uri, experiment
        self.mlflow: Any = None  # None: tracking is off (not started, or it failed)

    def _failed(self, doing: str, exc: BaseException) -> None:
        warnings.warn(f"MLflow tracking stopped: {doing} failed: {exc}", TrackingWarning, 2)
        self.mlflow = None

    def on_fit_start(self, run: Any, state: Any) -> None:
        try:
            mlflow = importlib.import_module("mlflow")
        except ImportError as exc:
            self._failed(f"importing mlflow ({INSTALL_HINT})", exc)
            return
        try:
            mlflow.set_tracking_uri(self.uri)
            mlflow.set_experiment(self.experiment)
            mlflow.start_run(run_name=self.directory.name)
            mlflow.log_params(flat_params(yaml.safe_load(self.spec_text)))
            self.mlflow = mlflow
        except Exception as exc:  # noqa: BLE001 - tracking never stops training
            self._failed("starting the run", exc)

    def on_epoch_end(self, run: Any, state: Any, logs: dict[str, float]) -> None:
        if self.mlflow is None:
            return
        metrics = {k: v for k, v in logs.items() if k != "epoch" and _finite(v)}
        try:
            self.mlflow.log_metrics(metrics, step=int(logs["epoch"]))
        except Exception as exc:  # noqa: BLE001
            self._failed("logging metrics", exc)

    def on_fit_end(self, run: Any, state: Any) -> None:
        if self.mlflow is None:
            return
        try:
            if run.history:
                last = {f"last_{k}": v for k, v in run.history[-1].items() if _finite(v)}
                self.mlflow.log_metrics(last)
            if run.stop_reason:
                self.mlflow.set_tag("stop_reason", run.stop_reason)
            for name in ("spec.yaml", "summary.txt", "checkpoints/best.pt"):
                if (self.directory / name).is_file():
                    folder = str(Path(name).parent) if "/" in name else None
                    self.mlflow.log_artifact(str(self.directory / name), folder)
            self.mlflow.end_run()
        except Exception as exc:  # noqa: BLE001
            self._failed("logging the summary and artefacts", exc)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
