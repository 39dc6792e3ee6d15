"""`tdsl predict --output FILE`: exactly FILE, in the format its extension names."""

import importlib.util
import io
import json
import os
import re

import attrs
import numpy as np
import pytest
import torch
from helpers import ring_spec

import tdsl
import tdsl.runs.directories
from tdsl.runs.cli import main
from tdsl.runs.directories import (
    RunError,
    _program_and_state,
    predict_run,
    prediction_bytes,
    run,
)
from tdsl.train.loops import predict

HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run directory, rows for it, and the model's outputs for those rows."""
    folder = tmp_path_factory.mktemp("predict")
    spec = ring_spec(tdsl.Optimizer("adam", lr=0.01))
    spec = attrs.evolve(spec, train=tdsl.Train(epochs=1, batch_size=32))
    directory, _ = run(spec, folder / "run", stream=io.StringIO())
    rows = np.random.default_rng(0).normal(size=(7, 2)).astype("float32")
    np.save(folder / "rows.npy", rows)
    program, state = _program_and_state(directory, "best")
    expected = predict(program, state, (torch.from_numpy(rows),)).numpy()
    return directory, folder / "rows.npy", expected


def _predict(trained, output) -> int:
    directory, rows, _ = trained
    return main(["predict", str(directory), "--input", str(rows), "--output", str(output)])


def _read(path):
    if path.suffix == ".npy":
        return np.load(path)
    if path.suffix == ".csv":
        return np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float32)
    return np.array(json.loads(path.read_text()), dtype=np.float32)


@pytest.mark.parametrize("name", ["p.npy", "p.csv", "p.json", "P.JSON"])
def test_the_output_is_exactly_the_path_given_in_its_format(trained, tmp_path, capsys, name):
    output = tmp_path / "new" / "folders" / name  # missing folders are created
    assert _predict(trained, output) == 0
    assert capsys.readouterr().out == f"wrote 7 predictions to {output}\n"
    assert os.listdir(output.parent) == [name]  # nothing beside it: no p.json.npy, no temp
    assert np.array_equal(_read(output), trained[2])  # every format keeps float32 exactly
    umask = os.umask(0o022)
    os.umask(umask)
    assert output.stat().st_mode & 0o777 == 0o666 & ~umask  # not the temporary file's 0600


def test_csv_is_one_plain_row_per_input_row(trained, tmp_path):
    assert _predict(trained, tmp_path / "p.csv") == 0
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert len(lines) == 7 and all(re.fullmatch(r"-?\d\.\d{18}e[+-]\d\d", x) for x in lines)


def test_json_is_an_array_of_the_rows_outputs():
    outputs = np.array([[0.53, np.nan], [1e-8, -np.inf]], dtype=np.float32)
    assert prediction_bytes(outputs, "json") == b"[[0.53, null], [1e-08, null]]\n"
    assert json.loads(prediction_bytes(np.array([1.5, 2], np.float32), "json")) == [1.5, 2]


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("p.txt", "unknown format '.txt'"),
        ("p.json.bak", "unknown format '.bak'"),
        ("noext", "no extension to choose a format"),
    ],
)
def test_an_unknown_format_is_refused_before_predicting(
    trained, tmp_path, capsys, monkeypatch, name, problem
):
    def never(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(tdsl.runs.directories, "_program_and_state", never)
    output = tmp_path / name
    assert _predict(trained, output) == 2
    choices = ".csv, .npy, .json, .parquet"
    assert capsys.readouterr().err == f"error: --output {output}: {problem}; use {choices}\n"
    assert not output.exists() and os.listdir(tmp_path) == []
    with pytest.raises(RunError, match=problem):  # the Python API refuses it first too
        predict_run(trained[0], trained[1], output)


@pytest.mark.skipif(HAS_PYARROW, reason="pyarrow is installed")
def test_parquet_without_pyarrow_names_the_package(trained, tmp_path, capsys):
    assert _predict(trained, tmp_path / "p.parquet") == 2
    err = capsys.readouterr().err
    assert "p.parquet: writing .parquet needs the pyarrow package (pip install pyarrow)" in err
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not HAS_PYARROW, reason="needs pyarrow")
def test_parquet_has_a_column_per_output_value(trained, tmp_path):
    import pyarrow.parquet as pq

    assert _predict(trained, tmp_path / "p.parquet") == 0
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.column_names == ["output_0"]
    assert np.array_equal(table.column("output_0").to_numpy(), trained[2][:, 0])


def test_an_unwritable_output_is_one_error_line(trained, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert _predict(trained, tmp_path / "file" / "p.csv") == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write {tmp_path / 'file' / 'p.csv'}: ")
    assert "Traceback" not in err and err.count("\n") == 1
