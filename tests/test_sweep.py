"""`tdsl sweep` and `tdsl compare`: planned trials, validation before any run, trials as
processes in their own run directories, failures recorded, interrupted sweeps resumed."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tdsl.runs import sweep as S
from tdsl.runs.cli import main
from tdsl.runs.distributions import SweepError, parse_param

ROOT = Path(__file__).resolve().parent.parent
TINY = """\
name: tiny
seed: 0
data: {kind: rings, n_positive: 50, n_negative: 50, split: {train: 0.7, val: 0.3}}
model:
  inputs: [{shape: [2]}]
  layers: [{op: linear, out_features: 4}, relu, {op: linear, out_features: 1}]
loss: {kind: bce_with_logits}
optimizer: {kind: adam, lr: 0.01}
metrics: [accuracy]
train: {epochs: 2, batch_size: 20, checkpoint: {monitor: val_accuracy}}
"""


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    return path


def test_a_grid_is_every_combination():
    trials = S.plan(["optimizer.lr=1e-3,1e-2", "train.batch_size=16,32,[8]"])
    assert len(trials) == 6
    assert trials[0] == ["optimizer.lr=1e-3", "train.batch_size=16"]
    assert trials[-1] == ["optimizer.lr=1e-2", "train.batch_size=[8]"]


def test_random_draws_are_seeded_and_in_range():
    params = [
        parse_param("optimizer.lr=log_uniform(1e-4,1e-1)"),
        parse_param("train.batch_size=int_uniform(1,8)"),
        parse_param("optimizer.kind=choice(adam,sgd)"),
    ]
    trials = S.plan([], params, samples=20, seed=7)
    assert trials == S.plan([], params, samples=20, seed=7)
    assert trials != S.plan([], params, samples=20, seed=8)
    for lr, size, kind in trials:
        assert 1e-4 <= float(lr.split("=")[1]) <= 1e-1
        assert 1 <= int(size.split("=")[1]) <= 8
        assert kind.split("=")[1] in ("adam", "sgd")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("optimizer.lr=log_normal(1,2)", "unknown distribution 'log_normal'"),
        ("optimizer.lr=log_uniform(0,1)", "log_uniform needs low > 0"),
        ("optimizer.lr=uniform(2,1)", "low 2 is above high 1"),
        ("x=int_uniform(1,2.5)", "int_uniform takes two integers"),
        ("optimizer.lr", "expected PATH=VALUES"),
    ],
)
def test_bad_distributions_are_refused(text, message):
    with pytest.raises(SweepError, match=message):
        parse_param(text)


def test_an_invalid_trial_stops_the_sweep_before_any_runs(tiny, tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["sweep", str(tiny), "--grid", "train.batch_size=16,-4", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert "error: 1 of 2 trials are invalid; none started" in err
    assert "trial 001 (train.batch_size=-4):" in err
    assert "<command line>:1:1: error: train.batch_size:" in err
    assert not out.exists()


def _fake(script: str):
    """A trial command that is a tiny Python program instead of a training run."""
    return lambda self, trial, run_dir: [sys.executable, "-c", script, str(run_dir)]


FINISH = "import pathlib, sys; pathlib.Path(sys.argv[1], 'final.json').write_text('{}')"


def test_a_failed_trial_is_recorded_and_the_others_go_on(tmp_path, monkeypatch, tiny):
    fail_second = (
        "import pathlib, sys; d = pathlib.Path(sys.argv[1])\n"
        "if d.name == 'trial-001': sys.stderr.write('line 1\\nboom\\n'); sys.exit(3)\n"
        "(d / 'final.json').write_text('{}')"
    )
    monkeypatch.setattr(S._Runner, "command", _fake(fail_second))
    S.create_sweep(tmp_path / "s", tiny, [["a=1"], ["a=2"], ["a=3"]])
    state = S.run_sweep(tmp_path / "s", parallel=2, stream=io.StringIO())
    assert [t["status"] for t in state["trials"]] == ["finished", "failed", "finished"]
    failed = S.read_state(tmp_path / "s")["trials"][1]
    assert failed["exit_code"] == 3 and failed["stderr_tail"] == "line 1\nboom"
    # Resuming reruns only the failed trial.
    monkeypatch.setattr(S._Runner, "command", _fake(FINISH + "; print('again')"))
    state = S.run_sweep(tmp_path / "s", stream=io.StringIO())
    assert all(t["status"] == "finished" for t in state["trials"])
    ran = [(tmp_path / "s" / t / "stdout.log").read_text() for t in ("trial-000", "trial-001")]
    assert ran == ["", "again\n"]


def test_a_sweep_directory_is_not_reused(tmp_path, tiny):
    S.create_sweep(tmp_path / "s", tiny, [["a=1"]])
    with pytest.raises(SweepError, match="already holds a sweep"):
        S.create_sweep(tmp_path / "s", tiny, [["a=1"]])
    assert S.new_sweep_dir("tiny") != S.new_sweep_dir("tiny")


def _tdsl(*args: str, **kwargs) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen([sys.executable, "-m", "tdsl", *args], env=env, text=True, **kwargs)


def test_six_trials_two_at_a_time_then_compare_ranks_them(tiny, tmp_path, capsys):
    out = tmp_path / "sweep"
    grid = ["--grid", "optimizer.lr=1e-3,3e-3,1e-1", "--grid", "train.batch_size=16,32"]
    process = _tdsl("sweep", str(tiny), *grid, "--parallel", "2", "--out", str(out),
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    printed, _ = process.communicate(timeout=300)
    assert process.returncode == 0, printed
    assert "trials: 6 finished" in printed
    state = S.read_state(out)
    dirs = {out / t["name"] for t in state["trials"]}
    assert len(dirs) == 6 and all((d / "final.json").is_file() for d in dirs)
    assert main(["compare", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["run", "optimizer.lr", "train.batch_size", "best"]
    best = [float(line.split()[3]) for line in lines[2:]]
    assert len(best) == 6 and best == sorted(best, reverse=True)
    assert main(["compare", str(out), "--sort", "val_loss"]) == 0
    val_loss = capsys.readouterr().out.splitlines()[0].split().index("val_loss")
    losses = [float(line.split()[val_loss]) for line in capsys.readouterr().out.splitlines()[2:]]
    assert losses == sorted(losses)


def test_an_interrupted_sweep_resumes_without_rerunning_finished_trials(tiny, tmp_path):
    out = tmp_path / "sweep"
    process = _tdsl("sweep", str(tiny), "--grid", "optimizer.lr=1e-3,1e-2,3e-2", "--out",
                    str(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    while not (out / "trial-000" / "final.json").exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 130
    first = (out / "trial-000" / "final.json").stat().st_mtime_ns
    state = json.loads((out / "sweep.json").read_text())
    assert state["trials"][0]["status"] == "finished"
    assert {t["status"] for t in state["trials"][1:]} <= {"pending", "interrupted", "running"}
    resumed = _tdsl("sweep", "--resume", str(out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    printed, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, printed
    assert "trial-000" not in printed and "trials: 3 finished" in printed
    assert (out / "trial-000" / "final.json").stat().st_mtime_ns == first


def test_a_sweep_file_gives_the_options(tmp_path):
    import argparse

    from tdsl.runs.sweep_file import apply_sweep_file

    path = tmp_path / "sweep.yaml"
    path.write_text(
        "sweep:\n  grid: {optimizer.lr: [1e-3, 0.01]}\n"
        "  params:\n    train.epochs: int_uniform(1,3)\n  random: 2\n  seed: 5\n",
        encoding="utf-8",
    )
    args = argparse.Namespace(grid=["train.batch_size=8"], param=[], set=[], random=None,
                              seed=0, parallel=1, trials=None, search=None, monitor=None,
                              mode="auto")  # fmt: skip
    apply_sweep_file(path, args)
    assert args.grid == ["optimizer.lr=0.001,0.01", "train.batch_size=8"]
    assert args.param == ["train.epochs=int_uniform(1,3)"] and (args.random, args.seed) == (2, 5)
    assert len(S.plan(args.grid, [parse_param(p) for p in args.param], args.random)) == 4
    path.write_text("sweep:\n  grids: {a: [1]}\n", encoding="utf-8")
    with pytest.raises(SweepError, match=r"sweep.yaml:2:3: sweep.grids: unknown option 'grids'"):
        apply_sweep_file(path, args)
