"""`train.track: {mlflow: ...}`: the spec, per-epoch metrics and artefacts go to MLflow, and a
tracking failure warns without stopping training. A stand-in `mlflow` module records the
calls (MLflow itself is an optional extra); the last test uses the real one when installed."""

from __future__ import annotations

import types

import pytest

import tdsl
from tdsl.runs.directories import run
from tdsl.train.tracking import TrackingWarning

SPEC = """\
name: tracked
seed: 0
data: {kind: rings, n_positive: 30, n_negative: 30, split: {train: 0.7, val: 0.3}}
model:
  inputs: [{shape: [2]}]
  layers: [{op: linear, out_features: 1}]
loss: {kind: bce_with_logits}
metrics: [accuracy]
train: {epochs: 2, batch_size: 16, track: {mlflow: {uri: URI, experiment: demo}}}
"""


def _fake_mlflow(fail: str | None = None) -> types.ModuleType:
    module = types.ModuleType("mlflow")
    module.calls = []

    def record(name):
        def call(*args, **kwargs):
            if name == fail:
                raise ConnectionError("tracking server unreachable")
            module.calls.append((name, args, kwargs))

        return call

    for name in ("set_tracking_uri", "set_experiment", "start_run", "log_params",
                 "log_metrics", "set_tag", "log_artifact", "end_run"):  # fmt: skip
        setattr(module, name, record(name))
    return module


def _spec(tmp_path):
    return tdsl.load(SPEC.replace("URI", f"file:{tmp_path / 'mlruns'}"))


def test_a_run_logs_params_metrics_and_artefacts(tmp_path, monkeypatch):
    fake = _fake_mlflow()
    monkeypatch.setitem(__import__("sys").modules, "mlflow", fake)
    run(_spec(tmp_path), tmp_path / "run", stream=None)
    names = [name for name, _, _ in fake.calls]
    assert names[:4] == ["set_tracking_uri", "set_experiment", "start_run", "log_params"]
    assert names[-1] == "end_run"
    params = fake.calls[3][1][0]
    assert params["train.epochs"] == "2" and params["optimizer.kind"] == "adam"
    steps = [kw["step"] for name, _, kw in fake.calls if name == "log_metrics" and "step" in kw]
    assert steps == [1, 2]
    artefacts = [args[0].split("run/")[1] for name, args, _ in fake.calls if name == "log_artifact"]
    assert artefacts == ["spec.yaml", "summary.txt", "checkpoints/best.pt"]


def test_a_tracking_failure_warns_and_training_goes_on(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "mlflow", _fake_mlflow(fail="log_metrics"))
    with pytest.warns(TrackingWarning, match="logging metrics failed: tracking server"):
        directory, result = run(_spec(tmp_path), tmp_path / "run")
    assert len(result.history) == 2 and (directory / "final.json").is_file()


def test_without_mlflow_a_run_warns_and_trains(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "mlflow", None)
    with pytest.warns(
        TrackingWarning, match=r"pip install mlflow \(or pip install -e '\.\[track\]'"
    ):
        _, result = run(_spec(tmp_path), tmp_path / "run")
    assert len(result.history) == 2


def test_tracking_is_off_by_default():
    spec = tdsl.load(SPEC.replace(", track: {mlflow: {uri: URI, experiment: demo}}", ""))
    assert spec.train.track is None
    assert "track: null" in tdsl.dump(spec, defaults=True)


def test_the_real_mlflow_records_the_run(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    run(_spec(tmp_path), tmp_path / "run")
    client = mlflow.tracking.MlflowClient(tracking_uri=f"file:{tmp_path / 'mlruns'}")
    (found,) = client.search_runs([client.get_experiment_by_name("demo").experiment_id])
    assert found.data.params["train.epochs"] == "2" and "val_loss" in found.data.metrics
