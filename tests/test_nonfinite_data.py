"""NaN and infinities in data: found while loading, located at the spec path with the file,
row and column; named in the stop message; never a silent `val_loss=nan` every epoch."""

import attrs
import numpy as np
import pytest
import torch
from test_data_sources import spec_for
from test_failures import diverging_spec

import tdsl
from tdsl.data import DataError, Splits, TensorData, load_data
from tdsl.data.finite import STREAMED_ROWS, first_nonfinite
from tdsl.train.loops import NonFiniteLoss, fit


def poisoned(rows: int = 40) -> np.ndarray:
    x = np.random.default_rng(0).normal(size=(rows, 3)).astype(np.float32)
    x[7, 2] = np.nan
    x[9, 0] = np.inf
    return x


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_nonfinite_features_in_tensor_files_are_located(tmp_path, suffix):
    path = tmp_path / f"d{suffix}"
    y = (np.arange(40) % 2).astype(np.float32)
    if suffix == ".npz":
        np.savez(path, x=poisoned(), y=y)
    else:
        torch.save({"x": torch.from_numpy(poisoned()), "y": torch.from_numpy(y)}, path)
    spec = spec_for(
        tdsl.Tensors(file=str(path), features=["x"], target="y", target_kind="binary"), shape=(3,)
    )
    report = tdsl.validate(spec)
    assert not report.ok
    [problem] = [d for d in report.diagnostics if d.severity == "error"]
    assert problem.path == ("data", "features", 0)
    assert f"array 'x' in {path} has NaN at row 7, column 2" in problem.message
    assert "2 non-finite values in 2 rows" in problem.message
    with pytest.raises(DataError, match="has NaN at row 7"):
        load_data(spec)


def test_a_nonfinite_regression_target_is_located(tmp_path):
    y = np.zeros((40, 2), np.float32)
    y[5, 1] = -np.inf
    np.savez(tmp_path / "d.npz", x=np.zeros((40, 3), np.float32), y=y)
    data = tdsl.Tensors(file=str(tmp_path / "d.npz"), target="y", target_kind="regression")
    report = tdsl.validate(spec_for(data, shape=(3,), out=2, loss="mse"))
    [problem] = [d for d in report.diagnostics if d.path == ("data", "target")]
    assert "-inf at row 5, column 1 (1 non-finite value in 1 row)" in problem.message


def test_a_streamed_npy_folder_is_checked_in_its_first_batches(tmp_path):
    np.save(tmp_path / "x.npy", poisoned())
    np.save(tmp_path / "y.npy", (np.arange(40) % 2).astype(np.float32))
    report = tdsl.validate(
        spec_for(tdsl.Tensors(file=str(tmp_path), target_kind="binary"), shape=(3,))
    )
    message = " ".join(d.message for d in report.diagnostics)
    assert f"{tmp_path}" in message and "NaN at row 7, column 2" in message
    assert "of its first 40" in message and STREAMED_ROWS >= 40


def test_a_python_factory_returning_nan_is_located(monkeypatch):
    import sys
    import types

    module = types.ModuleType("nanlab")
    module.make = lambda: {"x": poisoned(), "y": (np.arange(40) % 2).astype(np.float32)}
    monkeypatch.setitem(sys.modules, "nanlab", module)
    data = tdsl.PythonData(factory="nanlab.make", features=["x"], target="y", target_kind="binary")
    report = tdsl.validate(spec_for(data, shape=(3,)), allow_imports=["nanlab"])
    assert "array 'x' from factory 'nanlab.make' has NaN at row 7" in report.format()


def test_first_nonfinite_positions_within_image_rows():
    images = torch.zeros(4, 2, 3, 3)
    images[2, 1, 0, 2] = float("nan")
    assert first_nonfinite(images) == (2, (1, 0, 2), "NaN", 1, 1)
    assert first_nonfinite(torch.arange(6)) is None  # integers cannot be NaN


def test_the_stop_message_names_nonfinite_training_data():
    spec = attrs.evolve(diverging_spec(), optimizer=tdsl.Optimizer("sgd", lr=0.01))
    program = tdsl.compile(spec)
    x = torch.ones(64, 2)
    x[40, 1] = float("nan")
    data = TensorData((x,), torch.zeros(64, 1))
    with pytest.raises(NonFiniteLoss) as caught:
        fit(program, program.init(), data)
    message = str(caught.value)
    assert "The training data holds NaN (input 0, row 40 of the split" in message
    assert "not the learning rate" in message


def test_skip_batch_with_nan_validation_rows_stops_instead_of_logging_nan():
    spec = attrs.evolve(
        diverging_spec(on_nan="skip_batch"), optimizer=tdsl.Optimizer("sgd", lr=0.01)
    )
    program = tdsl.compile(spec)
    val = torch.ones(32, 2)
    val[3, 0] = float("nan")
    splits = Splits(
        TensorData((torch.ones(64, 2),), torch.zeros(64, 1)),
        TensorData((val,), torch.zeros(32, 1)),
        None,
    )
    with pytest.raises(
        NonFiniteLoss,
        match=r"validation loss became nan in epoch 1\. The "
        r"validation data holds NaN \(input 0, row 3",
    ):
        fit(program, program.init(), splits)
