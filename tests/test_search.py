"""`tdsl sweep --search`: an Optuna study in the sweep directory, trials pruned by epoch."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tdsl.runs.cli import main

HAS_OPTUNA = importlib.util.find_spec("optuna") is not None
SPEC = """\
name: tiny
seed: 0
data: {kind: rings, n_positive: 40, n_negative: 40, split: {train: 0.7, val: 0.3}}
model:
  inputs: [{shape: [2]}]
  layers: [{op: linear, out_features: 4}, relu, {op: linear, out_features: 1}]
loss: {kind: bce_with_logits}
optimizer: {kind: adam, lr: 0.01}
metrics: [accuracy]
train: {epochs: 4, batch_size: 8}
"""
SEARCH = [
    "--param",
    "optimizer.lr=log_uniform(1e-5,1e-1)",
    "--param",
    "model.layers[0].out_features=int_uniform(1,8)",
]


@pytest.fixture
def spec(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(SPEC, encoding="utf-8")
    return path


@pytest.mark.skipif(not HAS_OPTUNA, reason="optuna is not installed (tdsl[search])")
def test_a_search_prunes_trials_and_its_study_reopens(spec, tmp_path, capsys):
    import optuna

    out = tmp_path / "search"
    args = ["sweep", str(spec), "--search", "random", "--trials", "8", "--monitor", "val_loss"]
    assert main([*args, *SEARCH, "--seed", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "trials: " in printed and "best: trial-" in printed
    study = optuna.load_study(study_name="tdsl", storage=f"sqlite:///{out / 'study.db'}")
    states = [t.state for t in study.trials]
    assert len(states) == 8
    assert optuna.trial.TrialState.PRUNED in states
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    trials = json.loads((out / "sweep.json").read_text())["trials"]
    assert len({t["name"] for t in trials}) == 8
    pruned = [t for t in trials if t["status"] == "pruned"]
    final = json.loads((out / pruned[0]["name"] / "final.json").read_text())
    assert final["epochs"] < 4 and final["stop_reason"].startswith("pruned at epoch")
    # Asking for more trials of the same study continues it.
    state = json.loads((out / "sweep.json").read_text())
    state["search"]["trials"] = 9
    (out / "sweep.json").write_text(json.dumps(state))
    assert main(["sweep", "--resume", str(out)]) == 0
    assert (
        len(optuna.load_study(study_name="tdsl", storage=f"sqlite:///{out / 'study.db'}").trials)
        == 9
    )


def test_without_optuna_the_error_names_the_package(spec, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if not installed: import fails
    code = main(["sweep", str(spec), "--search", "tpe", "--trials", "2", *SEARCH])
    assert code == 1
    assert (
        "error: --search needs the optuna package: pip install optuna "
        "(or pip install -e '.[search]' in a tdsl checkout)" in capsys.readouterr().err
    )


def test_a_search_checks_the_ends_of_its_space_before_starting(spec, tmp_path, capsys):
    pytest.importorskip("optuna")
    bad = ["--param", "model.layers[0].out_features=int_uniform(0,8)"]
    out = tmp_path / "s"
    assert (
        main(["sweep", str(spec), "--search", "tpe", "--trials", "2", *bad, "--out", str(out)]) == 1
    )
    err = capsys.readouterr().err
    assert "trial 000 (model.layers[0].out_features=0):" in err
    assert not out.exists()
