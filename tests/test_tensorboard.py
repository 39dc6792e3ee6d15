"""`train.tensorboard: true`: event files with the epoch scalars (train and val under one
tag) and parameter histograms; off by default; a located error without the extra."""

from pathlib import Path

import attrs
import pytest

import tdsl
from tdsl.check import training_setup
from tdsl.data import load_data
from tdsl.runs.cli import main
from tdsl.runs.directories import run
from tdsl.train.loops import fit
from tdsl.train.program import compile
from tdsl.train.tensorboard import TensorBoardLogger

ROOT = Path(__file__).resolve().parent.parent
needs_tensorboard = pytest.mark.skipif(
    not training_setup.tensorboard_available(), reason="needs tdsl[tensorboard]"
)


def ring(epochs: int = 2, logging: bool = True) -> tdsl.Spec:
    spec = tdsl.load(ROOT / "specs" / "ring_dnn.yaml")
    return attrs.evolve(spec, train=attrs.evolve(spec.train, epochs=epochs, tensorboard=logging))


def read_events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"histograms": 0})
    events.Reload()
    return events


@needs_tensorboard
def test_a_run_logs_each_epoch_for_tensorboard(tmp_path):
    directory, result = run(ring(), tmp_path / "run")
    train = read_events(directory / "tensorboard" / "train")
    val = read_events(directory / "tensorboard" / "val")
    assert set(train.Tags()["scalars"]) == {"loss", "accuracy", "lr"}
    assert set(val.Tags()["scalars"]) == {"loss", "accuracy"}
    for events, prefix in ((train, ""), (val, "val_")):
        logged = [(e.step, e.value) for e in events.Scalars("accuracy")]
        expected = [(row["epoch"], row[f"{prefix}accuracy"]) for row in result.history]
        assert logged == [(step, pytest.approx(value)) for step, value in expected]
    histograms = train.Tags()["histograms"]
    assert "parameters/linear1.weight" in histograms and "parameters/linear3.bias" in histograms
    assert [h.step for h in train.Histograms("parameters/linear1.weight")] == [1, 2]


def test_logging_is_off_by_default(tmp_path):
    spec = ring(epochs=1, logging=False)
    assert tdsl.Train().tensorboard is False
    directory, _ = run(spec, tmp_path / "run")
    assert not (directory / "tensorboard").exists()


@needs_tensorboard
def test_the_logger_is_a_plain_fit_callback(tmp_path):
    spec = ring(logging=False)
    program = compile(spec)
    logger = TensorBoardLogger(tmp_path / "tb", histograms=False)
    fit(program, program.init(), load_data(spec), callbacks=[logger])
    events = read_events(tmp_path / "tb" / "train")
    assert [e.step for e in events.Scalars("loss")] == [1, 2]
    assert events.Tags()["histograms"] == []
    assert logger.writers == {}  # closed at the end of the fit


def test_without_the_package_validation_locates_the_option(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(training_setup, "tensorboard_available", lambda: False)
    path = tmp_path / "spec.yaml"
    path.write_text(tdsl.dump(ring()))
    report = tdsl.validate(path)
    (error,) = report.errors
    assert error.path == ("train", "tensorboard")
    assert error.message == (
        "TensorBoard logging needs the tensorboard package, which is not installed"
    )
    assert error.hint == (
        "pip install tensorboard (or pip install -e '.[tensorboard]' in a tdsl checkout), "
        "or set train.tensorboard: false"
    )
    line = path.read_text().splitlines()[error.location.line - 1]
    assert line.strip().startswith("tensorboard: true")
    assert main(["run", str(path), "--out", str(tmp_path / "run")]) == 1
    assert "not started: the spec has errors" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
