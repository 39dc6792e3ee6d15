"""Runs that fail: non-finite losses, Ctrl-C and SIGTERM, SIGKILL at any moment, and
run directories that cannot be written."""

import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import attrs
import pytest
import torch

import tdsl
from tdsl.data import Batch
from tdsl.runs.cli import main
from tdsl.runs.directories import RunError, run
from tdsl.runs.resuming import resume
from tdsl.train.atomic_files import FileWriteError, atomic_write_bytes
from tdsl.train.loops import NonFiniteLoss

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def diverging_spec(**train) -> tdsl.Spec:
    """Linear regression with SGD at lr 0.3: finite for one epoch, infinite in the second."""
    return tdsl.Spec(
        name="diverging",
        data=tdsl.LinearRegression(n=400, split=tdsl.Split(train=0.7, val=0.3)),
        model=tdsl.Model(
            inputs=[tdsl.Input(shape=[2])], layers=[tdsl.Layer("linear", out_features=1)]
        ),
        loss=tdsl.Loss("mse"),
        optimizer=tdsl.Optimizer("sgd", lr=0.3),
        metrics=[tdsl.Metric("mae")],
        train=tdsl.Train(epochs=4, batch_size=16, **train),
    )


def test_nonfinite_loss_stops_naming_step_epoch_and_last_metrics(tmp_path):
    with pytest.raises(NonFiniteLoss) as caught:
        run(diverging_spec(), tmp_path / "run")
    message = str(caught.value)
    assert "the loss became inf at step 30 (epoch 2, batch 12 of 18)" in message
    assert "last finite epoch metrics: loss=" in message
    kept = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert len(kept["history"]) == 1  # the last good epoch
    assert all(torch.isfinite(t).all() for t in kept["model"].values())


def test_cli_reports_nonfinite_loss_without_traceback(tmp_path, capsys):
    spec_file = tmp_path / "diverge.yaml"
    spec_file.write_text(tdsl.dump(diverging_spec()))
    assert main(["run", str(spec_file), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "error: the loss became inf at step 30" in err and "Traceback" not in err


def test_skip_batch_drops_the_update_and_counts_it():
    spec = attrs.evolve(diverging_spec(on_nan="skip_batch"), optimizer=tdsl.Optimizer("sgd"))
    program = tdsl.compile(spec)
    state = program.init()
    poisoned = Batch((torch.full((4, 2), float("nan")),), torch.zeros(4, 1))
    after, metrics = program.train_step(state, poisoned)
    assert metrics == {"skipped": 1, "count": 0}
    for name, tensor in state.params.items():
        assert torch.equal(after.params[name], tensor)
    assert after.step == state.step + 1
    good = Batch((torch.ones(4, 2),), torch.zeros(4, 1))
    moved, _ = program.train_step(after, good, donate=True)
    assert not torch.equal(moved.params["linear1.weight"], state.params["linear1.weight"])
    assert torch.isfinite(state.params["linear1.weight"]).all()


def test_skip_batch_run_finishes_and_logs_skips(tmp_path):
    directory, result = run(diverging_spec(on_nan="skip_batch"), tmp_path / "run")
    assert sum(row.get("skipped_batches", 0) for row in result.history) > 0
    assert len(result.history) == 4


def test_unwritable_run_directory_is_refused_before_training(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    spec = ROOT / "specs" / "ring_dnn.yaml"
    assert main(["run", str(spec), "--out", str(blocker / "run")]) == 1
    assert "cannot write the run directory" in capsys.readouterr().err


def test_a_failed_write_leaves_nothing_half_written(tmp_path, monkeypatch):
    target = tmp_path / "checkpoints" / "last.pt"
    atomic_write_bytes(target, b"old")

    def full_disk(fd, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(FileWriteError, match="No space left on device"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["last.pt"]


# --- interrupting real processes ----------------------------------------------------------


def long_spec(tmp_path: Path, epochs: int = 6) -> Path:
    """About a second per epoch: long enough to be interrupted mid-run."""
    spec = tdsl.load(ROOT / "specs" / "ring_dnn.yaml")
    spec = attrs.evolve(
        spec,
        data=attrs.evolve(spec.data, n_positive=3000, n_negative=3000),
        train=tdsl.Train(epochs=epochs, batch_size=4),
    )
    path = tmp_path / "long.yaml"
    path.write_text(tdsl.dump(spec))
    return path


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tdsl", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=ROOT,
    )


def final_model(directory: Path) -> dict[str, torch.Tensor]:
    return torch.load(directory / "checkpoints" / "last.pt", weights_only=True)["model"]


def history_without_time(directory: Path) -> list[dict]:
    rows = torch.load(directory / "checkpoints" / "last.pt", weights_only=True)["history"]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("straight")
    directory = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "tdsl", "run", str(long_spec(tmp_path)), "--out", str(directory)],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return directory


def wait_for_epoch(process: subprocess.Popen, epoch: int) -> None:
    for line in process.stderr:
        if line.startswith(f"epoch {epoch}/"):
            return
    raise AssertionError("the run ended before that epoch")


def test_sigterm_stops_cleanly_and_resume_matches(tmp_path, uninterrupted):
    directory = tmp_path / "run"
    process = start(["run", str(long_spec(tmp_path)), "--out", str(directory)])
    wait_for_epoch(process, 2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert f"tdsl resume {directory}" in err and "Traceback" not in err
    resume(directory)
    assert history_without_time(directory) == history_without_time(uninterrupted)
    for name, tensor in final_model(uninterrupted).items():
        assert torch.equal(final_model(directory)[name], tensor)


def test_sigkill_at_random_moments_never_corrupts_and_resumes_identically(tmp_path, uninterrupted):
    chance = random.Random(1234)
    directory = tmp_path / "run"
    spec_file = long_spec(tmp_path)
    kills = 0
    process = start(["run", str(spec_file), "--out", str(directory)])
    while kills < 3:
        time.sleep(chance.uniform(1.5, 3.0))
        if process.poll() is not None:
            break
        process.kill()
        process.communicate(timeout=60)  # reap it and close its pipes
        kills += 1
        if (directory / "checkpoints" / "last.pt").exists():
            kept = torch.load(directory / "checkpoints" / "last.pt", weights_only=True)
            assert all(math.isfinite(float(t.float().sum())) for t in kept["model"].values())
            process = start(["resume", str(directory)])
        else:  # killed before the first checkpoint: start over
            import shutil

            shutil.rmtree(directory, ignore_errors=True)
            process = start(["run", str(spec_file), "--out", str(directory)])
    process.communicate(timeout=300)
    assert process.returncode == 0
    assert not [p for p in (directory / "checkpoints").iterdir() if p.name.startswith(".")]
    assert history_without_time(directory) == history_without_time(uninterrupted)
    for name, tensor in final_model(uninterrupted).items():
        assert torch.equal(final_model(directory)[name], tensor)


def test_resume_of_a_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(RunError, match="no checkpoint at"):
        resume(tmp_path / "nothing")
