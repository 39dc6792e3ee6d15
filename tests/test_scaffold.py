"""`tdsl init DATA`: a first spec for a CSV file, an image folder or a text file."""

import importlib.util
import json
from pathlib import Path

import pytest

import tdsl
from tdsl.runs.cli import main
from tdsl.runs.scaffold import Task, task_of

DATA = Path(__file__).resolve().parent.parent / "specs" / "data"


def test_titanic_spec_validates_and_trains(tmp_path, capsys):
    out = tmp_path / "titanic.yaml"
    argv = ["init", str(DATA / "titanic.csv"), "--target", "Survived", "--out", str(out)]
    assert main(argv) == 0
    assert capsys.readouterr().out == f"wrote {out} (valid); train it with: tdsl run {out}\n"
    spec = tdsl.load(out)
    assert spec.data.target_kind == "binary" and spec.loss.kind == "bce_with_logits"
    columns = {c.name: c.transform for c in spec.data.columns}
    assert "PassengerId" not in columns  # an id: left out
    assert columns["Sex"] == "onehot" and columns["Age"] == "standardize"
    assert columns["Cabin"] == "missing"  # mostly missing text
    assert spec.train.early_stopping.monitor == "val_loss"
    run_dir = tmp_path / "run"
    assert main(["run", str(out), "--set", "train.epochs=2", "--out", str(run_dir)]) == 0
    assert json.loads((run_dir / "final.json").read_text())["epochs"] == 2
    assert main(argv) == 1  # never overwrites without --force
    assert "exists" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0


def test_text_file_gets_an_embedding_and_pooling(tmp_path, capsys):
    out = tmp_path / "reviews.yaml"
    assert main(["init", str(DATA / "reviews.tsv"), "--out", str(out)]) == 0
    spec = tdsl.load(out)
    assert spec.data.kind == "text" and spec.data.file == str(DATA / "reviews.tsv")
    assert [layer.op for layer in spec.model.layers] == ["embedding", "mean", "linear"]


@pytest.mark.skipif(importlib.util.find_spec("PIL") is None, reason="needs Pillow")
def test_image_folder_gets_a_small_cnn(tmp_path):
    out = tmp_path / "images.yaml"
    assert main(["init", str(DATA / "images"), "--out", str(out)]) == 0
    spec = tdsl.load(out)
    assert spec.data.kind == "images" and spec.data.target_kind == "binary"
    assert spec.model.layers[0].op == "conv2d"


def test_paths_are_relative_to_the_spec_nearby(tmp_path):
    (tmp_path / "rows.csv").write_text(
        "a,kind\n" + "".join(f"{i % 7},{'xyz'[i % 3]}\n" for i in range(30))
    )
    out = tmp_path / "spec.yaml"
    assert main(["init", str(tmp_path / "rows.csv"), "--target", "kind", "--out", str(out)]) == 0
    spec = tdsl.load(out)
    assert spec.data.file == "rows.csv" and spec.data.target_kind == "class"
    assert spec.model.layers[-1].args["out_features"] == 3


@pytest.mark.parametrize(
    ("cells", "task"),
    [
        (["0", "1", "", "1"], Task("binary")),
        (["0", "2", "1"], Task("class", 3)),
        (["0.5", "2", "1"], Task("regression")),
        (["cat", "dog", "cat"], Task("class", 2)),
    ],
)
def test_the_task_follows_the_target_cells(cells, task):
    assert task_of(cells) == task


def test_mistakes_are_one_line(tmp_path, capsys):
    csv = str(DATA / "titanic.csv")
    assert main(["init", csv, "--out", str(tmp_path / "a.yaml")]) == 1
    assert "needs --target COLUMN" in capsys.readouterr().err
    assert main(["init", csv, "--target", "survived", "--out", str(tmp_path / "a.yaml")]) == 1
    assert "no column 'survived'" in capsys.readouterr().err
    assert main(["init", str(tmp_path / "nothing.bin")]) == 1
    assert "no such file or folder" in capsys.readouterr().err
