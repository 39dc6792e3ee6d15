"""`tdsl.load_model(RUN_DIR).predict(rows)`, `tdsl predict --keep` and `tdsl eval --data`:
raw rows through the run's fitted transforms, decoded outputs, id columns passed through."""

import csv
import importlib.util
import json
import shutil
from pathlib import Path

import attrs
import numpy as np
import pytest

import tdsl
from tdsl.runs.cli import main
from tdsl.runs.directories import RunError

SPECS = Path(__file__).resolve().parent.parent / "specs"
NEW = SPECS / "data" / "titanic_new.csv"  # passengers without the Survived column


@pytest.fixture(scope="module")
def tabular(tmp_path_factory):
    spec = tdsl.load(SPECS / "tabular.yaml")
    spec = attrs.evolve(spec, train=attrs.evolve(spec.train, epochs=1))
    directory, _ = tdsl.run(spec, tmp_path_factory.mktemp("tab") / "run", progress=False)
    return directory


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_predict_keeps_id_columns_and_writes_a_readable_csv(tabular, tmp_path, capsys):
    out = tmp_path / "p.csv"
    argv = ["predict", str(tabular), "--input", str(NEW), "--keep", "PassengerId"]
    assert main([*argv, "--keep", "Sex", "--output", str(out)]) == 0
    rows = _csv_rows(out)
    assert list(rows[0]) == ["PassengerId", "Sex", "probability", "label"]
    given = _csv_rows(NEW)
    assert [r["PassengerId"] for r in rows] == [r["PassengerId"] for r in given]
    assert [r["Sex"] for r in rows] == [r["Sex"] for r in given]
    assert all(0 <= float(r["probability"]) <= 1 for r in rows)
    assert all(r["label"] == str(int(float(r["probability"]) >= 0.5)) for r in rows)


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (["--keep", "Passengerid"], "--keep Passengerid: no column 'Passengerid' in"),
        (["--keep", "PassengerId", "--output", "p.npy"], ".npy holds the raw outputs only"),
        (["--keep", "label"], "no column 'label'"),
    ],
)
def test_a_bad_keep_is_one_line(tabular, tmp_path, capsys, monkeypatch, extra, problem):
    monkeypatch.chdir(tmp_path)
    output = [] if "--output" in extra else ["--output", "p.csv"]
    assert main(["predict", str(tabular), "--input", str(NEW), *extra, *output]) == 1
    err = capsys.readouterr().err
    assert problem in err and err.count("\n") == 1 and not list(tmp_path.iterdir())


def test_a_header_only_csv_is_one_line(tabular, tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_text(NEW.read_text().splitlines()[0] + "\n")
    assert main(["predict", str(tabular), "--input", str(empty), "--output", "p.csv"]) == 1
    assert capsys.readouterr().err == f"error: {empty} holds no rows to predict\n"


def test_load_model_takes_rows_as_the_csv_source_does(tabular):
    model = tdsl.load_model(tabular)
    from_file = model.predict(NEW)
    given = _csv_rows(NEW)
    from_dicts = model.predict(given)
    from_columns = model.predict({name: [r[name] for r in given] for name in given[0]})
    for other in (from_dicts, from_columns):
        assert list(other.columns) == ["probability", "label"]
        assert np.array_equal(other["probability"], from_file["probability"])
        assert np.array_equal(other.outputs, from_file.outputs)
    assert len(from_file) == len(given) == len(from_file.rows())
    # The same numbers `tdsl predict` writes: the command is built on load_model.
    tdsl.predict_run(tabular, NEW, tabular.parent / "p.npy")
    assert np.array_equal(np.load(tabular.parent / "p.npy"), from_file.outputs.numpy())


def test_load_model_refuses_rows_it_cannot_use(tabular):
    model = tdsl.load_model(tabular, which="last")
    with pytest.raises(RunError, match="no column 'Sex' in <rows>"):
        model.predict([{"Pclass": 1}])
    with pytest.raises(RunError, match="expects rows of shape \\[15\\], the rows has \\[2\\]"):
        model.predict(np.zeros((3, 2), np.float32))
    with pytest.raises(RunError, match="which must be 'best' or 'last'"):
        tdsl.load_model(tabular, which="first")


def test_load_model_decodes_class_names(tmp_path):
    lines = ["a,b,kind"] + [
        f"{i % 3},{(i * 7) % 5},{('cat', 'dog', 'emu')[i % 3]}" for i in range(30)
    ]
    (tmp_path / "pets.csv").write_text("\n".join(lines) + "\n")
    spec = tdsl.load(
        f"""
name: pets
data: {{kind: csv, file: {tmp_path / "pets.csv"}, columns: [a, b], target: kind,
        target_kind: class, split: {{train: 0.8, val: 0.2}}}}
model: {{inputs: [{{shape: [2]}}], layers: [{{op: linear, out_features: 3}}]}}
loss: cross_entropy
optimizer: {{kind: adam, lr: 0.1}}
train: {{epochs: 2, batch_size: 8}}
"""
    )
    directory, _ = tdsl.run(spec, tmp_path / "run", progress=False)
    found = tdsl.load_model(directory).predict({"a": [0, 1, 2], "b": [0, 2, 4]})
    assert list(found.columns) == ["probability_cat", "probability_dog", "probability_emu", "label"]
    probabilities = np.stack([found[f"probability_{c}"] for c in ("cat", "dog", "emu")], axis=1)
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-6)
    names = np.array(["cat", "dog", "emu"])[probabilities.argmax(axis=1)]
    assert found["label"].tolist() == names.tolist()


# `tdsl eval RUN --data FILE`: a new labelled file through the run's fitted transforms.


def test_eval_scores_a_new_labelled_file_with_a_confusion_matrix(tabular, tmp_path, capsys):
    data = SPECS / "data" / "titanic.csv"
    assert main(["eval", str(tabular), "--data", str(data), "--format", "json"]) == 0
    found = json.loads(capsys.readouterr().out)
    matrix = np.array(found["confusion"]["matrix"])
    assert found["rows"] == 400 == matrix.sum() and found["confusion"]["classes"] == ["0", "1"]
    assert found["metrics"]["accuracy"] == pytest.approx(np.trace(matrix) / 400)
    truth = [int(r["Survived"]) for r in _csv_rows(data)]
    assert matrix.sum(axis=1).tolist() == [truth.count(0), truth.count(1)]  # rows: true class

    assert main(["eval", str(tabular), "--data", str(data)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{data} (400 rows): loss=")
    assert lines[1] == "confusion matrix (rows: true class, columns: predicted)"
    assert lines[3].split()[1:] == [str(v) for v in matrix[0]]


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="needs matplotlib")
def test_eval_draws_the_confusion_matrix(tabular, tmp_path, capsys):
    out = tmp_path / "cm.png"
    data = str(SPECS / "data" / "titanic.csv")
    assert main(["eval", str(tabular), "--data", data, "--confusion", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_refusals_are_one_line(tabular, tmp_path, capsys):
    assert main(["eval", str(tabular), "--confusion", "cm.png"]) == 2
    assert capsys.readouterr().err == "error: --confusion needs --data FILE\n"
    assert main(["eval", str(tabular), "--data", str(NEW)]) == 1  # no Survived column
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot use --data {NEW}: ") and "'Survived'" in err
    assert err.count("\n") == 1
    assert main(["eval", str(tabular), "--format", "json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"val"}


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda d: d.__setitem__("columns", 5), "columns is not a list"),
        (lambda d: d["columns"].__setitem__(0, "x"), "columns[0] is not a mapping"),
        (lambda d: d["columns"][0].__setitem__("categories", 3), "columns[0] categories are"),
        (lambda d: d["columns"][2].pop("fill"), "columns[2] has no fill"),
        (lambda d: d["columns"][2].__setitem__("fill", "abc"), "fill is 'abc', not a number"),
        (lambda d: d.__setitem__("classes", 7), "classes is not a list of class names"),
    ],
)
def test_a_tampered_transforms_file_is_one_line(tabular, tmp_path, capsys, edit, problem):
    copy = tmp_path / "run"
    shutil.copytree(tabular, copy)
    saved = json.loads((copy / "transforms.json").read_text())
    edit(saved)
    (copy / "transforms.json").write_text(json.dumps(saved))
    assert main(["predict", str(copy), "--input", str(NEW), "--output", "p.csv"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {copy / 'transforms.json'} does not hold valid csv transforms")
    assert problem in err and err.count("\n") == 1
