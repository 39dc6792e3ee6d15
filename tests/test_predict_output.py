"""`tdsl predict --output FILE`: exactly FILE, in the format its extension names, with a
header naming each column; probabilities and labels rather than logits."""

import importlib.util
import io
import json
import os

import attrs
import numpy as np
import pytest
import torch
from helpers import ring_spec

import tdsl
import tdsl.runs.inference
from tdsl.runs.cli import main
from tdsl.runs.directories import RunError, _program_and_state, predict_run, run
from tdsl.runs.prediction_files import table_bytes
from tdsl.train.loops import predict

HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run directory, rows for it, and the model's raw outputs (logits) for those rows."""
    folder = tmp_path_factory.mktemp("predict")
    spec = ring_spec(tdsl.Optimizer("adam", lr=0.01))
    spec = attrs.evolve(spec, train=tdsl.Train(epochs=1, batch_size=32))
    directory, _ = run(spec, folder / "run", stream=io.StringIO())
    rows = np.random.default_rng(0).normal(size=(7, 2)).astype("float32")
    np.save(folder / "rows.npy", rows)
    program, state = _program_and_state(directory, "best")
    expected = predict(program, state, (torch.from_numpy(rows),)).numpy()
    return directory, folder / "rows.npy", expected


def _predict(trained, output, *more) -> int:
    directory, rows, _ = trained
    return main(["predict", str(directory), "--input", str(rows), "--output", str(output), *more])


def _probabilities(trained) -> np.ndarray:
    return torch.sigmoid(torch.from_numpy(trained[2][:, 0])).numpy()


@pytest.mark.parametrize("name", ["p.npy", "p.csv", "p.json", "p.jsonl", "P.JSON"])
def test_the_output_is_exactly_the_path_given_in_its_format(trained, tmp_path, capsys, name):
    output = tmp_path / "new" / "folders" / name  # missing folders are created
    assert _predict(trained, output) == 0
    assert capsys.readouterr().out == f"wrote 7 predictions to {output}\n"
    assert os.listdir(output.parent) == [name]  # nothing beside it: no p.json.npy, no temp
    umask = os.umask(0o022)
    os.umask(umask)
    assert output.stat().st_mode & 0o777 == 0o666 & ~umask  # not the temporary file's 0600
    if name.endswith(".npy"):  # the raw outputs, exactly
        assert np.array_equal(np.load(output), trained[2])
        return
    if name.endswith(".csv"):
        lines = output.read_text().splitlines()
        assert lines[0] == "probability,label"
        rows = [dict(zip(("probability", "label"), x.split(","), strict=True)) for x in lines[1:]]
    else:
        rows = [json.loads(line) for line in output.read_text().splitlines()]
    probability = np.array([float(r["probability"]) for r in rows], dtype=np.float32)
    assert np.array_equal(probability, _probabilities(trained))  # float32 kept exactly
    assert [int(r["label"]) for r in rows] == (probability >= 0.5).astype(int).tolist()


def test_a_csv_of_numbers_may_have_a_header(trained, tmp_path):
    rows = np.load(trained[1])
    (tmp_path / "rows.csv").write_text(
        "x1,x2\n" + "\n".join(f"{a!r},{b!r}" for a, b in rows.tolist())
    )
    found = tdsl.load_model(trained[0]).predict(tmp_path / "rows.csv")
    assert np.array_equal(found.outputs.numpy(), trained[2])


def test_the_threshold_decides_binary_labels(trained, tmp_path):
    probability = _probabilities(trained)
    cut = float(np.median(probability))
    assert _predict(trained, tmp_path / "p.csv", "--threshold", str(cut)) == 0
    labels = [int(x.split(",")[1]) for x in (tmp_path / "p.csv").read_text().splitlines()[1:]]
    assert labels == (probability >= cut).astype(int).tolist() and 0 < sum(labels) < 7


def test_json_lines_write_non_finite_values_as_null():
    columns = {"id": np.array(["a", "b"], dtype=object), "v": np.array([0.53, np.nan], "f4")}
    assert table_bytes(columns, "json") == b'{"id": "a", "v": 0.53}\n{"id": "b", "v": null}\n'
    assert table_bytes(columns, "csv") == b"id,v\na,0.53\nb,nan\n"


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

    monkeypatch.setattr(tdsl.runs.inference, "_program_and_state", never)
    output = tmp_path / name
    assert _predict(trained, output) == 2
    choices = ".csv, .jsonl, .json, .npy, .parquet"
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
def test_parquet_has_the_named_columns(trained, tmp_path):
    import pyarrow.parquet as pq

    assert _predict(trained, tmp_path / "p.parquet") == 0
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.column_names == ["probability", "label"]
    assert np.array_equal(table.column("probability").to_numpy(), _probabilities(trained))


def test_an_unwritable_output_is_one_error_line(trained, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert _predict(trained, tmp_path / "file" / "p.csv") == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write {tmp_path / 'file' / 'p.csv'}: ")
    assert "Traceback" not in err and err.count("\n") == 1


def _save_pt(value):
    return lambda path: torch.save(value, path)


@pytest.mark.parametrize(
    ("name", "write", "problem"),
    [
        ("empty.npy", lambda p: np.save(p, np.zeros((0, 2), "f4")), "holds no rows to predict"),
        ("text.npy", lambda p: np.save(p, np.array([["a", "b"]])), "holds <U1 values"),
        ("dict.pt", _save_pt({"x": torch.zeros(2, 2)}), "holds a dict; a .pt input holds"),
        ("int.pt", _save_pt(3), "holds an int; a .pt input holds"),
        ("mixed.pt", _save_pt([torch.zeros(2, 2), 1]), "holds a list of 2 item(s), not all"),
        ("scalar.npy", lambda p: np.save(p, np.float32(1)), "expects rows of shape [2]"),
        ("broken.npy", lambda p: p.write_bytes(b"not numpy"), "cannot read input"),
        ("missing.npy", lambda p: None, "no such file"),
        ("header.csv", lambda p: p.write_text("x1,x2\n"), "holds no rows to predict"),
        ("empty.csv", lambda p: p.write_text(""), "holds no rows to predict"),
        ("words.csv", lambda p: p.write_text("x1,x2\n1,two\n"), "cannot read input"),
    ],
)
def test_a_bad_input_is_one_located_line(trained, tmp_path, capsys, name, write, problem):
    path = tmp_path / name
    write(path)
    assert main(["predict", str(trained[0]), "--input", str(path), "--output", "p.csv"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(path) in err
    assert problem in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "p.csv").exists()
